"""Timed units: cut at pauses, grouped by sentence, edges where the voice really starts and stops."""

from __future__ import annotations

import itertools

import numpy as np

from service.engines.types import Segment, Word
from service.stages.units import build_units, join_words, refine_edges


def words(*timed: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 0.9) for text, start, end in timed)


# One recogniser segment running across a 1.6 s pause, and a sentence cut in two by a 0.5 s pause.
SEGMENTS = (
    Segment(0, 0.5, 6.0, "Hello there. How are you", words(
        ("Hello", 0.5, 0.9), ("there.", 0.95, 1.4), ("How", 3.0, 3.2), ("are", 3.25, 3.4), ("you", 3.45, 3.7))),
    Segment(1, 4.2, 5.0, "doing today?", words(("doing", 4.2, 4.5), ("today?", 4.55, 5.0))),
)


def test_a_unit_never_spans_a_pause() -> None:
    units = build_units(SEGMENTS)
    assert [u.text for u in units] == ["Hello there.", "How are you", "doing today?"]
    for a, b in itertools.pairwise(units):
        assert b.start - a.end >= 0.3
    assert all(u.end > u.start for u in units)


def test_a_sentence_cut_by_a_pause_stays_one_group() -> None:
    units = build_units(SEGMENTS)
    assert units[1].group == units[2].group != units[0].group


def test_voice_activity_splits_where_the_words_run_on_and_sets_the_onset() -> None:
    # Whisper glued "How are you" onto "there." with no gap; the detector heard silence in between.
    glued = (Segment(0, 0.5, 3.7, "Hello there. How are you", words(
        ("Hello", 0.5, 0.9), ("there.", 0.95, 2.9), ("How", 2.9, 3.2), ("are", 3.25, 3.4), ("you", 3.45, 3.7))),)
    units = build_units(glued, speech=[(0.6, 1.45), (3.05, 3.75)])
    assert [u.text for u in units] == ["Hello there.", "How are you"]
    assert units[0].start == 0.6 and units[0].end == 1.45
    assert units[1].start == 3.05


def test_long_runs_are_cut_at_a_sentence_end() -> None:
    long = tuple(Word(f"w{i}{'.' if i == 9 else ''}", i * 0.7, i * 0.7 + 0.6, None) for i in range(20))
    units = build_units((Segment(0, 0.0, 14.0, "", long),), max_unit_seconds=8.0)
    assert len(units) == 2 and units[0].text.endswith("w9.")
    assert all(u.span <= 8.0 for u in units)


def test_engines_without_word_timings_or_punctuation() -> None:
    segments = (Segment(0, 1.0, 2.0, "uno dos", ()), Segment(1, 2.1, 3.0, "tres cuatro", ()))
    units = build_units(segments)
    assert [u.text for u in units] == ["uno dos tres cuatro"]  # 0.1 s apart: one unit
    assert build_units(()) == []


def test_edges_move_to_the_voice_energy() -> None:
    units = build_units(SEGMENTS)
    active = np.zeros(600, dtype=bool)  # 10 ms frames
    active[62:138] = True  # "Hello there." really spoken 0.62-1.38
    active[305:372] = True
    active[425:497] = True
    refined = refine_edges(units, active, 0.01)
    assert (refined[0].start, refined[0].end) == (0.62, 1.38)
    assert (refined[1].start, refined[1].end) == (3.05, 3.72)
    assert [u.text for u in refined] == [u.text for u in units]


def test_pieces_the_recogniser_attached_join_without_a_space() -> None:
    pieces = (Word("He", 0.0, 0.2, 0.9), Word("was", 0.25, 0.4, 0.9), Word("ill", 0.45, 0.6, 0.9),
              Word("-disposed,", 0.6, 1.0, 0.9, attached=True), Word("cold", 1.05, 1.3, 0.9),
              Word("-hearted.", 1.3, 1.7, 0.9, attached=True))
    assert join_words(pieces, "en") == "He was ill-disposed, cold-hearted."
    assert join_words((Word("東京", 0, 1, None), Word("に", 1, 2, None)), "ja") == "東京に"
    [unit] = build_units([Segment(0, 0.0, 1.7, "He was ill-disposed, cold-hearted.", pieces)])
    assert unit.text == "He was ill-disposed, cold-hearted."


def test_a_pause_inside_a_word_does_not_cut_it() -> None:
    pieces = (Word("rather", 0.0, 0.4, 0.9), Word("cold", 0.45, 0.8, 0.9),
              Word("-hearted", 1.4, 1.8, 0.9, attached=True))  # a 0.6 s gap the recogniser heard in one word
    assert [u.text for u in build_units([Segment(0, 0.0, 1.8, "rather cold-hearted", pieces)])] == [
        "rather cold-hearted"]


def test_a_unit_that_changes_speaker_is_split_where_the_voice_changes() -> None:
    words = (Word("So", 0.0, 0.2, 0.9), Word("what", 0.25, 0.5, 0.9), Word("now?", 0.55, 0.9, 0.9),
             Word("We", 1.0, 1.2, 0.9), Word("wait.", 1.25, 1.6, 0.9))  # no pause long enough to cut at
    segments = [Segment(0, 0.0, 1.6, "So what now? We wait.", words)]
    assert [u.text for u in build_units(segments)] == ["So what now? We wait."]
    units = build_units(segments, turns=[(0.0, 0.95, "S1"), (0.95, 1.6, "S2")])
    assert [(u.text, u.speaker) for u in units] == [("So what now?", "S1"), ("We wait.", "S2")]
    assert units[0].group != units[1].group  # another voice: its own sentence for the translator
    assert [u.speaker for u in refine_edges(units, np.ones(200, dtype=bool), 0.01)] == ["S1", "S2"]
