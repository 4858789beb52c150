"""Planning how translated speech is fitted into the source timeline.

Pure arithmetic, no I/O: the dubbing stage asks these functions what to do
(speak faster, stretch, or let speech run into the following silence) and
records the outcome as a `FitRecord` for the manifest.

Order of tools for one segment, as the spec demands:

1. synthesize at normal rate, measure natural duration ``d``;
2. if ``d > span``: re-synthesize with engine rate ``choose_rate(d, span)``;
3. if still longer: pitch-preserving time-stretch by ``choose_stretch(d_r, span)``;
4. if still longer: run into the following silence up to ``next_start``;
   whatever is left is an overflow, cut with a short fade at ``next_start``
   (see `place`).

Speech is never slowed down to fill a slot: shorter speech leaves silence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_MAX_ENGINE_RATE = 1.25
DEFAULT_STRETCH_CEILING = 1.25
# Overruns smaller than this are float noise, not overflows (well under one 48 kHz block).
OVERFLOW_TOLERANCE_S = 1e-3
FADE_OUT_S = 0.020


@dataclass(frozen=True)
class SegmentTiming:
    """Where a source segment sits and how far its dub may run (``next_start``)."""

    index: int
    source_start: float
    source_end: float
    next_start: float

    @property
    def span(self) -> float:
        """Length of the source speech the dub should match."""
        return max(0.0, self.source_end - self.source_start)

    @property
    def slot(self) -> float:
        """Longest the dub may last before it collides with the next segment."""
        return max(0.0, self.next_start - self.source_start)


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
            )
        )
    return timings


def _speedup(duration: float, span: float, limit: float) -> float:
    """Factor ``>= 1`` that would make ``duration`` fit ``span``, capped at ``limit``."""
    if limit < 1.0 or not math.isfinite(limit):
        raise ValueError(f"speed-up limit must be finite and >= 1, got {limit}")
    if duration < 0 or span < 0:
        raise ValueError(f"durations must be non-negative, got duration={duration} span={span}")
    if duration <= span:
        return 1.0
    if span == 0.0:
        return limit
    return min(duration / span, limit)


def choose_rate(natural_duration: float, span: float, max_engine_rate: float = DEFAULT_MAX_ENGINE_RATE) -> float:
    """Engine speaking-rate factor for re-synthesis; 1.0 means keep the natural take."""
    return _speedup(natural_duration, span, max_engine_rate)


def choose_stretch(duration_after_rate: float, span: float, ceiling: float = DEFAULT_STRETCH_CEILING) -> float:
    """Pitch-preserving tempo factor; never below 1.0 (we never slow speech to fill)."""
    return _speedup(duration_after_rate, span, ceiling)


def place(timing: SegmentTiming, final_duration: float) -> Placement:
    """Place the final clip at ``source_start``; cut (and flag) anything past ``next_start``."""
    if final_duration < 0 or not math.isfinite(final_duration):
        raise ValueError(f"final_duration must be finite and non-negative, got {final_duration}")
    start = timing.source_start
    natural_end = start + final_duration
    overrun = natural_end - timing.next_start
    overflowed = overrun > OVERFLOW_TOLERANCE_S
    return Placement(
        index=timing.index,
        source_start=timing.source_start,
        source_end=timing.source_end,
        placed_start=start,
        placed_end=min(natural_end, timing.next_start),
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
