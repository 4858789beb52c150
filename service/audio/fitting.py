"""Planning how translated speech is fitted into the source timeline (isochrony).

Pure arithmetic, no I/O. Each unit's dub should fill its source span: within ±10 % of it, starting at
the source onset. The tools, in order:

1. the engine's own speaking rate, chosen *both ways* from a prediction of the line's natural length:
   faster for long lines (up to ``max_engine_rate``), slower for short ones (down to ``min_tempo``);
2. a pitch-preserving time-stretch of what is still off, inside the same limits (the tempo of rate and
   stretch together stays within [``min_tempo``, ``max_engine_rate * stretch_ceiling``]); residues
   within ``tolerance`` are left alone;
3. what is still too long runs into the following silence up to the next unit's start and never
   past it (the rest is cut with a short fade and counted as an overflow, see `place`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_MAX_ENGINE_RATE = 1.25
DEFAULT_STRETCH_CEILING = 1.25
DEFAULT_MIN_TEMPO = 0.85
# A dub within this share of its span is left as it is: stretching costs time and a little quality.
DEFAULT_TOLERANCE = 0.03
# Overruns smaller than this are float noise, not overflows (well under one 48 kHz block).
OVERFLOW_TOLERANCE_S = 1e-3
FADE_OUT_S = 0.020
BREAK_S = 0.15
# Units are cut where the speaker pauses, but the edges drawn in by voice activity may meet (a breath, room
# noise): even then a dub stops this much before the next one starts, so two lines never run together.
MIN_BREAK_S = 0.05


@dataclass(frozen=True)
class SegmentTiming:
    """Where a source segment sits and how far its dub may run (``next_start``)."""

    index: int
    source_start: float
    source_end: float
    next_start: float
    followed: bool = True  # another segment comes at `next_start` (False: it is the end of the timeline)

    @property
    def span(self) -> float:
        """Length of the source speech the dub should match."""
        return max(0.0, self.source_end - self.source_start)

    @property
    def slot(self) -> float:
        """From this segment's start to the next one's."""
        return max(0.0, self.next_start - self.source_start)

    @property
    def room(self) -> float:
        """Longest the dub may last: up to the next segment, leaving the pause the source had before it (from
        `MIN_BREAK_S` up to `BREAK_S`), so one line never runs into the next without a breath."""
        pause = min(BREAK_S, max(MIN_BREAK_S, self.next_start - self.source_end)) if self.followed else 0.0
        return max(0.0, self.slot - pause)


@dataclass(frozen=True)
class Placement:
    """Where a fitted clip lands; ``cut_seconds`` is what was cut off at ``next_start``."""

    index: int
    source_start: float
    source_end: float
    placed_start: float
    placed_end: float
    overflowed: bool
    cut_seconds: float

    @property
    def max_duration(self) -> float:
        """How much of the clip the voice-track builder may play."""
        return self.placed_end - self.placed_start


@dataclass(frozen=True)
class FitRecord:
    """One segment's fitting outcome, as written to the manifest."""

    index: int
    source_start: float
    source_end: float
    placed_start: float
    placed_end: float
    rate: float
    stretch: float
    overflowed: bool


@dataclass(frozen=True)
class SyncFigures:
    """Whole-job sync quality: timeline IoU, stretch statistics, overflow count."""

    iou: float
    mean_stretch: float
    max_stretch: float
    overflow_count: int


def slots_from_segments(starts_ends: Sequence[tuple[float, float]], total_duration: float) -> list[SegmentTiming]:
    """Turn ``(start, end)`` pairs (in time order) into timings bounded by the next start.

    The last segment is bounded by ``total_duration``. Segments must be sorted
    by start; an overlapping source (next start before this end) simply
    gives a slot shorter than the span, and the dub is cut at the next start.
    """
    if not math.isfinite(total_duration) or total_duration < 0:
        raise ValueError(f"total_duration must be a finite non-negative number, got {total_duration}")
    timings: list[SegmentTiming] = []
    previous_start = -math.inf
    for i, (start, end) in enumerate(starts_ends):
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"segment {i} has a non-finite time: {(start, end)}")
        if end < start:
            raise ValueError(f"segment {i} ends before it starts: {(start, end)}")
        if start < previous_start:
            raise ValueError(f"segment {i} starts before segment {i - 1}; sort segments by start")
        previous_start = start
    for i, (start, end) in enumerate(starts_ends):
        bound = starts_ends[i + 1][0] if i + 1 < len(starts_ends) else total_duration
        source_start = min(start, total_duration)
        source_end = min(end, total_duration)
        timings.append(
            SegmentTiming(
                index=i,
                source_start=source_start,
                source_end=source_end,
                next_start=max(source_start, min(bound, total_duration)),
                followed=i + 1 < len(starts_ends),
            )
        )
    return timings


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _check(duration: float, span: float, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < 1.0 or low > 1.0:
        raise ValueError(f"tempo limits must satisfy 0 < low <= 1 <= high, got {low}, {high}")
    if duration < 0 or span < 0:
        raise ValueError(f"durations must be non-negative, got duration={duration} span={span}")


def choose_rate(natural_duration: float, span: float, max_engine_rate: float = DEFAULT_MAX_ENGINE_RATE,
                min_tempo: float = DEFAULT_MIN_TEMPO, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Engine speaking-rate factor that makes `natural_duration` last `span` (faster or slower), clamped;
    1.0 when the natural take already fits within `tolerance` (or there is no span to fit)."""
    _check(natural_duration, span, min_tempo, max_engine_rate)
    if span <= 0.0:
        return max_engine_rate if natural_duration > 0 else 1.0
    if natural_duration <= 0.0:
        return 1.0
    wanted = natural_duration / span
    if abs(wanted - 1.0) <= tolerance:
        return 1.0
    return _clamp(wanted, min_tempo, max_engine_rate)


def choose_stretch(duration_after_rate: float, span: float, ceiling: float = DEFAULT_STRETCH_CEILING,
                   rate: float = 1.0, min_tempo: float = DEFAULT_MIN_TEMPO, max_tempo: float | None = None,
                   tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Pitch-preserving tempo factor (> 1 shortens) for a clip spoken at `rate`, so it lasts `span`.

    The stretch stays within [1 / ceiling, ceiling], and the tempo of rate and stretch together within
    [`min_tempo`, `max_tempo`] (default: the ceiling times the engine's largest rate, 1.25 * 1.25).
    """
    _check(duration_after_rate, span, min(min_tempo, 1.0), ceiling)
    if duration_after_rate <= 0.0:
        return 1.0
    if span <= 0.0:
        return ceiling
    wanted = duration_after_rate / span
    if abs(wanted - 1.0) <= tolerance:
        return 1.0
    top = ceiling if max_tempo is None else min(ceiling, max_tempo / rate)
    bottom = max(1.0 / ceiling, min_tempo / rate)
    return _clamp(wanted, min(bottom, 1.0), max(top, 1.0))


def within_slot(duration: float, stretch: float, slot: float, ceiling: float, rate: float = 1.0,
                max_tempo: float | None = None) -> float:
    """`stretch`, raised so the clip also ends before the next unit starts (inside the same limits): the
    tolerance that leaves a clip a little long must not let it be cut at its neighbour."""
    if slot <= 0 or duration / stretch <= slot:
        return stretch
    top = ceiling if max_tempo is None else min(ceiling, max_tempo / rate)
    return max(stretch, min(duration / slot, max(top, 1.0)))


def place(timing: SegmentTiming, final_duration: float) -> Placement:
    """Place the final clip at ``source_start``; cut (and flag) anything past its `room` (the next segment's
    start, less the pause before it)."""
    if final_duration < 0 or not math.isfinite(final_duration):
        raise ValueError(f"final_duration must be finite and non-negative, got {final_duration}")
    start = timing.source_start
    natural_end = start + final_duration
    limit = start + timing.room
    overrun = natural_end - limit
    overflowed = overrun > OVERFLOW_TOLERANCE_S
    return Placement(
        index=timing.index,
        source_start=timing.source_start,
        source_end=timing.source_end,
        placed_start=start,
        placed_end=min(natural_end, limit),
        overflowed=overflowed,
        cut_seconds=overrun if overflowed else 0.0,
    )


def fit_record(placement: Placement, rate: float, stretch: float) -> FitRecord:
    """Manifest record for a placed segment."""
    return FitRecord(
        index=placement.index,
        source_start=placement.source_start,
        source_end=placement.source_end,
        placed_start=placement.placed_start,
        placed_end=placement.placed_end,
        rate=rate,
        stretch=stretch,
        overflowed=placement.overflowed,
    )


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of intervals as sorted, disjoint pairs; empty intervals are dropped."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _total_length(intervals: Sequence[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def _intersection_length(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Overlap of two sorted disjoint interval lists (two-pointer sweep)."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def interval_iou(a: Iterable[tuple[float, float]], b: Iterable[tuple[float, float]]) -> float:
    """IoU of the unions of two interval sets; 1.0 when both are empty (nothing to mis-sync)."""
    ma, mb = merge_intervals(a), merge_intervals(b)
    inter = _intersection_length(ma, mb)
    union = _total_length(ma) + _total_length(mb) - inter
    if union <= 0.0:
        return 1.0
    return inter / union


def sync_figures(records: Sequence[FitRecord]) -> SyncFigures:
    """Summarise how well the dub follows the source speech timeline.

    ``mean_stretch``/``max_stretch`` are over the pitch-preserving stretch factor
    only (engine rate is recorded per segment); 1.0 when there are no records.
    """
    source = [(r.source_start, r.source_end) for r in records]
    placed = [(r.placed_start, r.placed_end) for r in records]
    stretches = [r.stretch for r in records]
    return SyncFigures(
        iou=interval_iou(source, placed),
        mean_stretch=sum(stretches) / len(stretches) if stretches else 1.0,
        max_stretch=max(stretches) if stretches else 1.0,
        overflow_count=sum(1 for r in records if r.overflowed),
    )
