"""Caption limits and SRT/WebVTT round trips."""

from __future__ import annotations

import itertools

import pytest

from service.stages.captions import (
    MAX_CPS,
    MAX_DURATION,
    MAX_LINE,
    MAX_LINES,
    MIN_DURATION,
    Cue,
    build_cues,
    parse_srt,
    parse_vtt,
    reading_lag,
    to_srt,
    to_vtt,
)

LONG = (
    "This is a rather long sentence that goes on and on, with commas, clauses; and more words than "
    "any subtitle line could hold. Then another sentence follows it! And one more? "
) * 4


def assert_limits(cues: list[Cue]) -> None:
    for cue in cues:
        assert cue.end > cue.start
        assert cue.end - cue.start <= MAX_DURATION + 1e-6
        assert 1 <= len(cue.lines) <= MAX_LINES
        assert all(0 < len(line) <= MAX_LINE for line in cue.lines)


def test_long_text_is_split_within_limits() -> None:
    cues = build_cues([(1.0, 41.0, LONG)])
    assert_limits(cues)
    assert " ".join(" ".join(c.lines) for c in cues) == " ".join(LONG.split())
    assert cues[0].start == 1.0 and cues[-1].end == 41.0
    assert all(a.end == b.start for a, b in itertools.pairwise(cues))
    # prefers punctuation: most cues end a clause
    assert sum(c.text.endswith((".", ",", ";", "!", "?")) for c in cues) >= len(cues) * 0.6


def test_time_is_proportional_to_characters() -> None:
    text = "The first part of this segment is a fairly long clause, which keeps going on. Short one."
    cues = build_cues([(0.0, 6.0, text)], max_cps=None)
    assert [c.text.replace("\n", " ") for c in cues] == [text[:-11], "Short one."]
    first, second = (c.end - c.start for c in cues)
    assert first / second == pytest.approx(len(text[:-11]) / len("Short one."), rel=0.01)


def test_slow_short_text_is_split_by_duration() -> None:
    cues = build_cues([(0.0, 20.0, "one two three four five six")])
    assert_limits(cues)
    assert len(cues) >= 3 and cues[-1].end == 20.0


def test_edge_cases() -> None:
    giant = "x" * 100
    cues = build_cues([(0.0, 3.0, giant), (3.0, 3.0, "zero"), (5.0, 4.0, "negative"), (6.0, 7.0, "  "), (8.0, 9.0, "")],
                      max_cps=None)
    assert_limits(cues)
    assert "".join("".join(c.lines) for c in cues[:-2]) == giant
    assert [c.text for c in cues[-2:]] == ["zero", "negative"]
    assert cues[-2].start == 3.0 and cues[-1].start == 5.0
    assert build_cues([]) == []


def test_overlaps_are_clipped() -> None:
    cues = build_cues([(0.0, 5.0, "first"), (2.0, 4.0, "second")], max_cps=None)
    assert cues[0].end == 2.0 and cues[1].start == 2.0


def assert_readable(cues: list[Cue]) -> None:
    assert_limits(cues)
    for cue in cues:
        assert cue.end - cue.start >= MIN_DURATION - 1e-6
        assert len(cue.text.replace("\n", " ")) / (cue.end - cue.start) <= MAX_CPS + 1e-6
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(cues))


def test_fast_speech_gets_reading_time_from_the_silence_after_it() -> None:
    line = "Esta frase se dice muy deprisa y no cabe."  # 41 characters in 1.5 s: 27 per second
    cues = build_cues([(1.0, 2.5, line), (6.0, 7.0, "Luego.")])
    assert_readable(cues)
    assert cues[0].start == 1.0 and cues[0].end == pytest.approx(1.0 + len(line) / MAX_CPS, abs=1e-3)
    assert cues[1].start == 6.0  # the next cue is on time: the first one only used the silence


def test_dense_speech_never_overlaps_and_reports_its_lag() -> None:
    segments = [(t, t + 1.0, "Una frase bastante larga que se dice rapido.") for t in (0.0, 1.2, 2.4, 3.6, 12.0)]
    cues = build_cues(segments, timeline_end=20.0)
    assert_readable(cues)
    assert cues[-1].start == 12.0  # the pause let the captions catch up with the speech
    assert 0.0 < reading_lag(cues, segments) < 7.0


def test_short_cues_stay_up_long_enough_and_end_before_the_mix_does() -> None:
    cues = build_cues([(0.0, 0.2, "Sí."), (9.7, 9.9, "No.")], timeline_end=10.0)
    assert_readable(cues)
    assert cues[-1].end <= 10.0


def test_srt_round_trip() -> None:
    cues = build_cues([(0.0, 41.0, LONG), (3661.5, 3663.25, "Late cue & <tags>")])
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,000 --> ")
    assert "01:01:01,500 --> 01:01:03,250" in srt
    assert parse_srt(srt) == cues
    assert parse_srt(srt.replace("\n", "\r\n")) == cues


def test_vtt_round_trip_and_escaping() -> None:
    cues = build_cues([(0.0, 41.0, LONG), (50.0, 52.0, "A --> B & <c>")])
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert "A --&gt; B &amp; &lt;c&gt;" in vtt
    assert parse_vtt(vtt) == cues


def test_parse_vtt_skips_notes_and_ids() -> None:
    text = (
        "WEBVTT - title\n\nNOTE a comment\n\nintro\n00:01.000 --> 00:02.500 align:start\nHi\nthere\n\n"
        "00:00:03.000 --> 00:00:04.000\nBye\n"
    )
    assert parse_vtt(text) == [Cue(1.0, 2.5, "Hi\nthere"), Cue(3.0, 4.0, "Bye")]


def test_short_lines_close_together_share_a_cue_instead_of_falling_behind() -> None:
    segments = [(0.0, 0.5, "Sí."), (0.8, 1.4, "Claro que sí."), (1.6, 2.0, "Vale."), (9.0, 9.5, "Adiós.")]
    cues = build_cues(segments)
    assert_readable(cues)
    assert cues[0].text.replace("\n", " ") == "Sí. Claro que sí. Vale."
    assert cues[0].start == 0.0 and cues[-1].start == 9.0
    assert reading_lag(cues, segments) == 0.0


def test_captions_name_the_speaker_only_when_several_speak() -> None:
    lines = [(0.0, 2.0, "Good morning."), (2.5, 4.5, "Good morning to you.")]
    both = build_cues(lines, speakers=["S1", "S2"])
    assert "<v S1>Good morning." in to_vtt(both) and "<v S2>Good morning to you." in to_vtt(both)
    assert "\nS1: Good morning.\n" in to_srt(both) and "\nS2: Good morning to you.\n" in to_srt(both)
    alone = build_cues(lines, speakers=["S1", "S1"])
    assert "<v" not in to_vtt(alone) and "S1:" not in to_srt(alone)
    # Two people's quick lines are never joined into one cue.
    quick = [(0.0, 0.4, "Yes."), (0.5, 0.9, "No.")]
    assert len(build_cues(quick, speakers=["S1", "S2"])) == 2 and len(build_cues(quick)) == 1
