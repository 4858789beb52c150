"""Caption limits and SRT/WebVTT round trips."""

from __future__ import annotations

import itertools

import pytest

from service.pipeline.captions import (
    MAX_DURATION,
    MAX_LINE,
    MAX_LINES,
    Cue,
    build_cues,
    parse_srt,
    parse_vtt,
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
    cues = build_cues([(0.0, 6.0, text)])
    assert [c.text.replace("\n", " ") for c in cues] == [text[:-11], "Short one."]
    first, second = (c.end - c.start for c in cues)
    assert first / second == pytest.approx(len(text[:-11]) / len("Short one."), rel=0.01)


def test_slow_short_text_is_split_by_duration() -> None:
    cues = build_cues([(0.0, 20.0, "one two three four five six")])
    assert_limits(cues)
    assert len(cues) >= 3 and cues[-1].end == 20.0


def test_edge_cases() -> None:
    giant = "x" * 100
    cues = build_cues([(0.0, 3.0, giant), (3.0, 3.0, "zero"), (5.0, 4.0, "negative"), (6.0, 7.0, "  "), (8.0, 9.0, "")])
    assert_limits(cues)
    assert "".join("".join(c.lines) for c in cues[:-2]) == giant
    assert [c.text for c in cues[-2:]] == ["zero", "negative"]
    assert cues[-2].start == 3.0 and cues[-1].start == 5.0
    assert build_cues([]) == []


def test_overlaps_are_clipped() -> None:
    cues = build_cues([(0.0, 5.0, "first"), (2.0, 4.0, "second")])
    assert cues[0].end == 2.0 and cues[1].start == 2.0


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
