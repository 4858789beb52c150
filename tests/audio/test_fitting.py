"""Fitting plan: rate, stretch, spill into silence, overflow cut, IoU."""

from __future__ import annotations

import math

import pytest

from service.audio.fitting import (
    FitRecord,
    SegmentTiming,
    choose_rate,
    choose_stretch,
    fit_record,
    interval_iou,
    merge_intervals,
    place,
    slots_from_segments,
    sync_figures,
)


def test_slots_bounded_by_next_start_and_total() -> None:
    slots = slots_from_segments([(1.0, 3.0), (4.0, 6.0), (8.0, 9.5)], total_duration=10.0)
    assert slots == [
        SegmentTiming(0, 1.0, 3.0, 4.0),
        SegmentTiming(1, 4.0, 6.0, 8.0),
        SegmentTiming(2, 8.0, 9.5, 10.0, followed=False),
    ]
    assert slots[0].span == 2.0 and slots[0].slot == 3.0


def test_slots_reject_unsorted_or_inverted() -> None:
    with pytest.raises(ValueError):
        slots_from_segments([(4.0, 5.0), (1.0, 2.0)], 10.0)
    with pytest.raises(ValueError):
        slots_from_segments([(4.0, 3.0)], 10.0)


def test_too_long_speeds_up_then_stretches_within_limits() -> None:
    span = 2.0
    rate = choose_rate(3.0, span)  # wants 1.5x, engine capped at 1.25
    assert rate == pytest.approx(1.25)
    after_rate = 3.0 / rate  # 2.4 s
    stretch = choose_stretch(after_rate, span)
    assert stretch == pytest.approx(1.2)
    assert after_rate / stretch == pytest.approx(span)


def test_too_short_is_slowed_down_but_not_below_the_floor() -> None:
    assert choose_rate(1.8, 2.0) == pytest.approx(0.9)  # a little short: spoken a little slower
    assert choose_rate(1.0, 2.0) == pytest.approx(0.85)  # much too short: the floor, then silence
    after_rate = 1.0 / 0.85
    assert choose_stretch(after_rate, 2.0, rate=0.85) == pytest.approx(1.0)  # no slower than the floor
    assert choose_stretch(1.7, 2.0) == pytest.approx(0.85)  # a stretch alone may slow down to the floor
    assert choose_rate(1.98, 2.0) == 1.0 and choose_stretch(2.03, 2.0) == 1.0  # within tolerance: left alone
    placement = place(SegmentTiming(0, 5.0, 7.0, 9.0), 1.0)
    assert (placement.placed_start, placement.placed_end) == (5.0, 6.0)  # silence left after
    assert not placement.overflowed and placement.cut_seconds == 0.0


def test_ceilings_respected() -> None:
    assert choose_rate(10.0, 2.0, max_engine_rate=1.25) == 1.25
    assert choose_stretch(10.0, 2.0, ceiling=1.25) == 1.25
    assert choose_stretch(10.0, 2.0, ceiling=1.1) == 1.1
    assert choose_rate(1.0, 0.0) == 1.25  # zero-length span: as fast as allowed
    with pytest.raises(ValueError):
        choose_stretch(3.0, 2.0, ceiling=0.9)  # a ceiling below 1 would mean slowing down


def test_overflow_into_following_silence_is_not_an_overflow() -> None:
    timing = SegmentTiming(3, 10.0, 12.0, 13.5)
    placement = place(timing, 3.2)  # runs 1.2 s past the span, still before next_start
    assert placement.placed_end == pytest.approx(13.2)
    assert not placement.overflowed


def test_never_into_the_next_segment() -> None:
    timing = SegmentTiming(3, 10.0, 12.0, 13.0)
    placement = place(timing, 3.5)
    assert placement.placed_end == pytest.approx(13.0 - 0.15)  # a breath before the next line, as the source had
    assert placement.overflowed
    assert placement.cut_seconds == pytest.approx(0.65)
    assert placement.max_duration == pytest.approx(2.85)
    abutting = SegmentTiming(4, 20.0, 21.0, 21.05)  # the source itself paused only 50 ms
    assert place(abutting, 1.5).placed_end == pytest.approx(21.0)
    touching = SegmentTiming(5, 30.0, 31.0, 31.0)  # the edges met: a short break all the same
    assert place(touching, 1.5).placed_end == pytest.approx(31.0 - 0.05)


def test_last_segment_bounded_by_total_duration() -> None:
    last = slots_from_segments([(0.0, 1.0), (8.0, 9.5)], total_duration=10.0)[-1]
    placement = place(last, 2.5)
    assert placement.placed_end == 10.0
    assert placement.overflowed and placement.cut_seconds == pytest.approx(0.5)


def test_float_noise_is_not_an_overflow() -> None:
    placement = place(SegmentTiming(0, 0.0, 1.0, 1.05), 1.0 + 1e-6)  # room: up to 50 ms before the next
    assert not placement.overflowed
    assert placement.placed_end == 1.0


def test_merge_and_iou() -> None:
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2), (2, 2.5), (5, 5)]) == [(0, 2.5), (3, 4)]
    # source [0,2] + [3,4] = 3 s; placed [1,3.5] = 2.5 s; overlap [1,2] + [3,3.5] = 1.5 s
    iou = interval_iou([(0, 2), (3, 4)], [(1, 3.5)])
    assert iou == pytest.approx(1.5 / (3.0 + 2.5 - 1.5))
    assert interval_iou([], []) == 1.0
    assert interval_iou([(0, 1)], []) == 0.0


def test_sync_figures() -> None:
    records = [
        FitRecord(0, 0.0, 2.0, 0.0, 2.0, 1.0, 1.0, False),
        FitRecord(1, 3.0, 4.0, 3.0, 4.5, 1.25, 1.25, False),
        FitRecord(2, 5.0, 6.0, 5.0, 5.5, 1.0, 1.0, True),
    ]
    figures = sync_figures(records)
    # source 4 s, placed 4 s, overlap 2 + 1 + 0.5 = 3.5
    assert figures.iou == pytest.approx(3.5 / 4.5)
    assert figures.mean_stretch == pytest.approx(3.25 / 3)
    assert figures.max_stretch == 1.25
    assert figures.overflow_count == 1
    empty = sync_figures([])
    assert empty.iou == 1.0 and empty.overflow_count == 0 and empty.mean_stretch == 1.0


def test_fit_record_from_placement() -> None:
    placement = place(SegmentTiming(2, 1.0, 2.0, 2.5), 1.9)
    record = fit_record(placement, rate=1.25, stretch=1.1)
    assert record == FitRecord(2, 1.0, 2.0, 1.0, 2.35, 1.25, 1.1, True)
    assert math.isclose(placement.cut_seconds, 0.55)
