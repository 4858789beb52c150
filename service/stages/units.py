"""Timed units: what gets dubbed, cut from the recogniser's words where the speaker pauses.

A recogniser's segments are made for reading, not for timing: Whisper runs a segment across a pause
and cuts sentences in two. The dub follows the speech instead. Words are grouped into units that
never span a pause longer than `pause_seconds` (seen in the word timings or in voice activity),
and each unit's edges are drawn in to where voice activity says speech starts and stops. Meaning
is kept by the `group` of each unit: consecutive units are in the same group while a sentence runs
on across the pause between them, and the translator translates a group as one text.

Pure functions on plain values: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.engines.types import Segment, Word

PAUSE_SECONDS = 0.3
MAX_UNIT_SECONDS = 12.0
# A group (a sentence that runs across pauses) is translated as one text; without punctuation to
# end it (engines that give none), groups stop at this many units.
MAX_GROUP_UNITS = 8
# How far a word may lie outside the voice-activity region it is matched to, and how far a unit's edge
# may move to the region's edge.
_REGION_SLACK = 0.25
_SNAP_SECONDS = 0.6

# Sentence and clause ends of every script the recognisers write: Latin/Cyrillic/Greek punctuation, the CJK
# full stops and commas, the Devanagari danda (\u0964) and the Arabic question mark and comma.
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\u0964\u061f][\"'\u201d\u2019\u00bb)\]]*$")
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013\u3001\uff0c\u060c][\"'\u201d\u2019\u00bb)\]]*$")
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "sr.", "jr.", "vs.", "etc.", "e.g.", "i.e.", "no."})
_NO_SPACE_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})


@dataclass(frozen=True, slots=True)
class Unit:
    """A stretch of speech between pauses: dubbed as one clip that starts at `start`."""

    id: int
    start: float
    end: float
    text: str
    group: int
    # Who speaks it (S1, S2, ...); None when speakers were not told apart.
    speaker: str | None = None

    @property
    def span(self) -> float:
        return max(0.0, self.end - self.start)


def ends_sentence(word: str) -> bool:
    return bool(_SENTENCE_END.search(word)) and word.lower() not in _ABBREVIATIONS


def _words_of(segments: Sequence[Segment]) -> list[Word]:
    """Every word in time order; a segment without word timings counts as one long word."""
    words: list[Word] = []
    for segment in segments:
        if segment.words:
            words.extend(w for w in segment.words if w.text.strip())
        elif segment.text.strip():
            words.append(Word(segment.text.strip(), segment.start, segment.end, None))
    words.sort(key=lambda w: (w.start, w.end))
    clean: list[Word] = []
    for word in words:
        start = max(word.start, clean[-1].start) if clean else word.start
        clean.append(Word(word.text, start, max(word.end, start), word.confidence, word.attached))
    return clean


def _region_of(word: Word, regions: Sequence[tuple[float, float]]) -> int | None:
    """The voice-activity region the word overlaps most (or lies nearest to, within a little slack)."""
    best, best_overlap = None, 0.0
    for index, (start, end) in enumerate(regions):
        if start > word.end + _REGION_SLACK:
            break
        overlap = min(end, word.end) - max(start, word.start)
        if overlap > best_overlap or (best is None and overlap > -_REGION_SLACK):
            best, best_overlap = index, max(overlap, best_overlap)
    return best


def _split_long(run: list[Word], max_seconds: float) -> list[list[Word]]:
    """Cut a run longer than `max_seconds` at a sentence end, else a clause end, else its widest gap."""
    if len(run) < 2 or run[-1].end - run[0].start <= max_seconds:
        return [run]
    middle = (run[0].start + run[-1].end) / 2

    def best_cut(pattern: re.Pattern[str] | None) -> int | None:
        candidates = [i for i in range(1, len(run))
                      if not run[i].attached and (pattern is None or pattern.search(run[i - 1].text))]
        if not candidates:
            return None
        if pattern is None:  # the widest pause, ties broken towards the middle
            return max(candidates, key=lambda i: (run[i].start - run[i - 1].end, -abs(run[i].start - middle)))
        return min(candidates, key=lambda i: abs(run[i].start - middle))

    cut = best_cut(_SENTENCE_END) or best_cut(_CLAUSE_END) or best_cut(None)
    if cut is None:  # one word made of attached pieces: never cut inside a word
        return [run]
    return _split_long(run[:cut], max_seconds) + _split_long(run[cut:], max_seconds)


def join_words(words: Sequence[Word], language: str | None) -> str:
    """The words as text: a space between two words, none before a piece the recogniser attached to the word
    before it ("ill" + "-disposed"), none at all in languages written without spaces."""
    separator = "" if language in _NO_SPACE_LANGUAGES else " "
    text = ""
    for index, word in enumerate(words):
        piece = word.text.strip()
        if not piece:
            continue
        text += piece if index == 0 or word.attached or not text else separator + piece
    return text


def speaker_at(turns: Sequence[tuple[float, float, str]], start: float, end: float) -> str | None:
    """The speaker of the turn overlapping [start, end] most, else of the nearest turn."""
    best, best_overlap, nearest, nearest_gap = None, 0.0, None, float("inf")
    for turn_start, turn_end, speaker in turns:
        overlap = min(end, turn_end) - max(start, turn_start)
        if overlap > best_overlap:
            best, best_overlap = speaker, overlap
        gap = max(turn_start - end, start - turn_end, 0.0)
        if gap < nearest_gap:
            nearest, nearest_gap = speaker, gap
    return best if best is not None else nearest


def build_units(
    segments: Sequence[Segment],
    speech: Sequence[tuple[float, float]] | None = None,
    *,
    language: str | None = None,
    pause_seconds: float = PAUSE_SECONDS,
    max_unit_seconds: float = MAX_UNIT_SECONDS,
    turns: Sequence[tuple[float, float, str]] | None = None,
) -> list[Unit]:
    """Units from the transcript's words and (optionally) voice-activity `speech` regions.

    A new unit starts after a pause of `pause_seconds` between words, or where the next word lies in
    another speech region (regions are separated by silence the voice-activity detector measured), or
    where the speaker changes (`turns`: who speaks when); a speaker change also ends the sentence group.
    """
    words = _words_of(segments)
    if not words:
        return []
    speaker_of = [speaker_at(turns, w.start, w.end) for w in words] if turns else [None] * len(words)
    regions = sorted(speech) if speech else []
    region_of = [_region_of(w, regions) if regions else None for w in words]

    runs: list[list[Word]] = [[words[0]]]
    run_regions: list[tuple[int | None, int | None]] = [(region_of[0], region_of[0])]
    run_speakers: list[str | None] = [speaker_of[0]]
    for i in range(1, len(words)):
        gap = words[i].start - words[i - 1].end
        new_region = region_of[i] is not None and region_of[i - 1] is not None and region_of[i] != region_of[i - 1]
        new_speaker = speaker_of[i] != run_speakers[-1]
        if (gap >= pause_seconds or new_region or new_speaker) and not words[i].attached:  # never inside a word
            runs.append([])
            run_regions.append((region_of[i], region_of[i]))
            run_speakers.append(speaker_of[i])
        runs[-1].append(words[i])
        run_regions[-1] = (run_regions[-1][0], region_of[i])

    pieces: list[tuple[list[Word], tuple[int | None, int | None]]] = []
    piece_speakers: list[str | None] = []
    for run, bounds, speaker in zip(runs, run_regions, run_speakers, strict=True):
        parts = _split_long(run, max_unit_seconds)
        for k, part in enumerate(parts):
            # Only the first piece of a run may take its region's start, only the last its end.
            pieces.append((part, (bounds[0] if k == 0 else None, bounds[1] if k == len(parts) - 1 else None)))
            piece_speakers.append(speaker)
    # A region shared by several runs (the recogniser heard a pause the detector did not) gives its start
    # to the first of them and its end to the last.
    seen_first: set[int] = set()
    last_owner: dict[int, int] = {}
    for index, (_, (_, last)) in enumerate(pieces):
        if last is not None:
            last_owner[last] = index

    punctuated = any(ends_sentence(w.text) for w in words)
    units: list[Unit] = []
    group, in_group = 0, 0
    for index, (run, (first_region, last_region)) in enumerate(pieces):
        text = join_words(run, language)
        if not text:
            continue
        speaker = piece_speakers[index]
        if units and speaker != units[-1].speaker and in_group:  # another voice: another sentence
            group, in_group = group + 1, 0
        start, end = run[0].start, run[-1].end
        if first_region is not None and first_region not in seen_first:
            seen_first.add(first_region)
            region_start = regions[first_region][0]
            # Voice activity marks the onset better than word timings do: follow it inside the words'
            # span, and a little before it.
            if start - _SNAP_SECONDS <= region_start < end:
                start = region_start
        if last_region is not None and last_owner.get(last_region) == index:
            region_end = regions[last_region][1]
            if start < region_end <= end + _SNAP_SECONDS:
                end = region_end
        if units and start < units[-1].end:  # never before the previous unit has ended
            start = units[-1].end
        if end <= start:
            start, end = max(run[0].start, units[-1].end if units else 0.0), max(run[-1].end, start + 0.05)
        units.append(Unit(len(units), round(start, 3), round(end, 3), text, group, speaker))
        in_group += 1
        if not punctuated or ends_sentence(run[-1].text) or in_group >= MAX_GROUP_UNITS:
            group, in_group = group + 1, 0
    return units


def refine_edges(units: Sequence[Unit], active: Sequence[bool], frame_seconds: float,
                 reach: float = 0.3) -> list[Unit]:
    """Units with their edges moved to where the voice's energy says speech starts and stops.

    Word timings and a voice-activity model both blur the edges (a word's timing often runs into the
    silence; the model pads and holds); a 10 ms energy reading of the voice itself does not. Each edge
    moves at most `reach` seconds and never past a neighbour.
    """
    refined: list[Unit] = []
    frames = len(active)
    for i, unit in enumerate(units):
        lower = max(unit.start - reach, refined[-1].end if refined else 0.0)
        upper = min(unit.end + reach, units[i + 1].start if i + 1 < len(units) else unit.end + reach)
        first = next((f for f in range(max(0, round(lower / frame_seconds)), min(frames, round(upper / frame_seconds)))
                      if active[f]), None)
        last = next((f for f in range(min(frames, round(upper / frame_seconds)) - 1,
                                      max(0, round(lower / frame_seconds)) - 1, -1) if active[f]), None)
        start, end = unit.start, unit.end
        if first is not None and last is not None and (last + 1 - first) * frame_seconds >= 0.1:
            start, end = first * frame_seconds, (last + 1) * frame_seconds
        refined.append(Unit(unit.id, round(start, 3), round(end, 3), unit.text, unit.group, unit.speaker))
    return refined
