"""The proofread round-trip: a language's captions downloaded, their texts edited, sent back.

When a render exports its captions it keeps, per cue, which segments' words the cue shows (`cue_records`); a cue
may show part of a long segment, or two short ones joined. An edited file must have the same cues at the same
times (`mismatch` names the first that is not); each cue whose text changed gives its words back to the segments
it showed, in proportion to the words each had, and those segments' texts are rebuilt from all their cues
(`edited_texts`). Pure functions on plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.stages.captions import Cue, parse_srt, parse_vtt

TIMING_TOLERANCE = 0.002  # seconds: the files carry milliseconds


def _words(text: str) -> list[str]:
    return text.split()


def _spoken(text: str, speaker: str | None) -> str:
    """A cue's words without the speaker label the captions put first when several speak ("S1: ", `<v S1>`):
    the label is not the line's text, and a proofreader who keeps or drops it has not edited the line."""
    stripped = text.strip()
    if speaker:
        for label in (f"{speaker}: ", f"<v {speaker}>"):
            if stripped.startswith(label):
                stripped = stripped[len(label):].removesuffix("</v>").strip()
                break
    return stripped


def cue_records(cues: Sequence[Cue], segments: Sequence[tuple[int, float, str]]) -> list[dict[str, Any]]:
    """Each cue (number, start, end, text) with the pieces of segment text it shows: [[segment id, text], ...].
    `segments` are (id, start, text) as the cues were built from them."""
    words = [(seg_id, word) for seg_id, _, text in sorted(segments, key=lambda s: s[1]) for word in _words(text)]
    records: list[dict[str, Any]] = []
    position = 0
    for number, cue in enumerate(cues, start=1):
        count = len(_words(cue.text))
        taken = words[position:position + count]
        position += count
        pieces: list[list[Any]] = []
        for seg_id, word in taken:
            if pieces and pieces[-1][0] == seg_id:
                pieces[-1][1] += " " + word
            else:
                pieces.append([seg_id, word])
        records.append({"number": number, "start": round(cue.start, 3), "end": round(cue.end, 3),
                        "text": " ".join(_words(cue.text)), "speaker": cue.speaker, "pieces": pieces})
    return records


def parse(text: str) -> list[Cue]:
    """An SRT or WebVTT file's cues (WebVTT when it starts so)."""
    if text.lstrip("\ufeff \t\r\n").startswith("WEBVTT"):
        return parse_vtt(text)
    return parse_srt(text)


def _stamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def mismatch(records: Sequence[dict[str, Any]], edited: Sequence[Cue]) -> str | None:
    """Why the edited cues cannot be applied (the first bad cue named), or None."""
    for index, record in enumerate(records):
        number = index + 1
        if index >= len(edited):
            return (f"cue {number} ({_stamp(record['start'])} --> {_stamp(record['end'])}) is missing: the captions "
                    f"have {len(records)} cues, the file {len(edited)}")
        cue = edited[index]
        if abs(cue.start - record["start"]) > TIMING_TOLERANCE or abs(cue.end - record["end"]) > TIMING_TOLERANCE:
            return (f"cue {number} is timed {_stamp(cue.start)} --> {_stamp(cue.end)}, the captions have "
                    f"{_stamp(record['start'])} --> {_stamp(record['end'])}; change texts only")
    if len(edited) > len(records):
        cue = edited[len(records)]
        return (f"cue {len(records) + 1} ({_stamp(cue.start)} --> {_stamp(cue.end)}) is not in the captions: they "
                f"have {len(records)} cues, the file {len(edited)}")
    return None


def _share(words: list[str], weights: list[int]) -> list[str]:
    """`words` divided into len(weights) consecutive runs in proportion to `weights`."""
    total = sum(weights) or 1
    out, start, seen = [], 0, 0
    for i, weight in enumerate(weights):
        seen += weight
        end = len(words) if i == len(weights) - 1 else round(len(words) * seen / total)
        out.append(" ".join(words[start:end]))
        start = end
    return out


def edited_texts(records: Sequence[dict[str, Any]], edited: Sequence[Cue]) -> tuple[list[int], dict[int, str]]:
    """(numbers of the cues whose text changed, new text of every segment they touch). Call after `mismatch`."""
    changed: list[int] = []
    pieces: list[list[list[Any]]] = []
    for record, cue in zip(records, edited, strict=True):
        new_words = _words(_spoken(cue.text, record.get("speaker")))
        own = [list(p) for p in record["pieces"]]
        if " ".join(new_words) != record["text"]:
            changed.append(int(record["number"]))
            shared = _share(new_words, [len(_words(p[1])) for p in own]) if own else []
            for piece, text in zip(own, shared, strict=True):
                piece[1] = text
        pieces.append(own)
    touched = {int(p[0]) for i in changed for p in records[i - 1]["pieces"]}
    texts: dict[int, list[str]] = {seg_id: [] for seg_id in touched}
    for own in pieces:
        for seg_id, text in own:
            if int(seg_id) in texts and text:
                texts[int(seg_id)].append(text)
    return changed, {seg_id: " ".join(parts) for seg_id, parts in texts.items() if parts}
