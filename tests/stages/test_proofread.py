"""The proofread round-trip's pure part: which segments each cue shows, what an edited file may change."""

from __future__ import annotations

from service.stages import captions, proofread

SEGMENTS = [(1, 0.5, "Hola."), (2, 1.2, "Buenos días a todos los que escuchan este programa de radio tan largo "
                                        "que no cabe en una sola línea de subtítulos, ni en dos."),
            (3, 9.0, "Adiós.")]


def cues_and_records() -> tuple[list[captions.Cue], list[dict[str, object]]]:
    timed = [(0.5, 1.0, SEGMENTS[0][2]), (1.2, 8.5, SEGMENTS[1][2]), (9.0, 9.6, SEGMENTS[2][2])]
    cues = captions.build_cues(timed, timeline_end=12.0)
    return cues, proofread.cue_records(cues, SEGMENTS)


def test_every_word_of_every_segment_is_in_exactly_one_cue() -> None:
    cues, records = cues_and_records()
    assert len(records) == len(cues) >= 3
    shown: dict[int, list[str]] = {}
    for record in records:
        for seg_id, text in record["pieces"]:  # type: ignore[attr-defined]
            shown.setdefault(seg_id, []).append(text)
    assert {k: " ".join(v) for k, v in shown.items()} == {i: t for i, _, t in SEGMENTS}


def test_the_round_trip_unchanged_changes_nothing_and_one_edited_cue_changes_its_segments() -> None:
    cues, records = cues_and_records()
    srt = captions.to_srt(cues)
    assert proofread.mismatch(records, proofread.parse(srt)) is None
    assert proofread.edited_texts(records, proofread.parse(srt)) == ([], {})
    vtt = captions.to_vtt(cues)
    last = cues[-1]
    edited = vtt.replace(f"\n{last.text}\n", "\nHasta luego.\n")
    changed, texts = proofread.edited_texts(records, proofread.parse(edited))
    assert changed == [len(cues)] and texts == {3: "Hasta luego."}


def test_a_moved_or_missing_cue_is_named() -> None:
    cues, records = cues_and_records()
    moved = [cues[0], captions.Cue(cues[1].start + 0.5, cues[1].end, cues[1].text), *cues[2:]]
    assert (proofread.mismatch(records, moved) or "").startswith("cue 2 is timed")
    assert (proofread.mismatch(records, cues[:-1]) or "").startswith(f"cue {len(cues)} ")
    extra = [*cues, captions.Cue(20.0, 21.0, "Más.")]
    assert (proofread.mismatch(records, extra) or "").startswith(f"cue {len(cues) + 1} ")
