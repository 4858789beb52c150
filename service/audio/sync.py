"""Sync figures measured from the audio: the rendered voice stem against the source voice.

Both recordings go through the same energy detector (`voice_activity.energy_activity`, 10 ms frames).
Per unit, the source span and onset are read from the source voice inside the unit's window, and the
dubbed duration and onset from the stem inside the window the dub was allowed (its start up to the
next unit's start). Nothing here is taken from the plan: these are the figures a listener would get.

Runs in the process pool on file paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from service.audio.voice_activity import BRIDGE_SECONDS, FRAME_SECONDS, bridged, energy_activity
from service.workpool import progress

# How far before a unit's planned start its source onset is looked for, and after it.
_ONSET_BEFORE, _ONSET_AFTER = 0.2, 0.3
WITHIN = 0.10  # "in sync": the dub lasts within ±10 % of its source span


@dataclass(frozen=True)
class UnitWindow:
    """A unit as planned: its source span, and how far its dub may run (the next unit's start)."""

    id: int
    start: float
    end: float
    window_end: float


@dataclass(frozen=True)
class MeasuredUnit:
    id: int
    source_onset: float
    source_span: float
    dubbed_onset: float | None
    dubbed_duration: float
    duration_ratio: float | None
    onset_offset: float | None


def _frame(seconds: float) -> int:
    return max(0, round(seconds / FRAME_SECONDS))


def _first_last(active: npt.NDArray[np.bool_], start: float, end: float) -> tuple[float, float] | None:
    lo, hi = _frame(start), min(_frame(end), len(active))
    found = np.flatnonzero(active[lo:hi]) if hi > lo else np.zeros(0, dtype=np.int64)
    if found.size == 0:
        return None
    return (lo + int(found[0])) * FRAME_SECONDS, (lo + int(found[-1]) + 1) * FRAME_SECONDS


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def measure_units(source: npt.NDArray[np.bool_], stem: npt.NDArray[np.bool_],
                  units: Sequence[UnitWindow]) -> list[MeasuredUnit]:
    measured: list[MeasuredUnit] = []
    for i, unit in enumerate(units):
        previous_end = units[i - 1].end if i else 0.0
        heard = _first_last(source, max(unit.start - _ONSET_BEFORE, previous_end), min(unit.end + _ONSET_AFTER,
                                                                                        unit.window_end))
        source_onset, source_end = heard if heard else (unit.start, unit.end)
        source_onset = source_onset if abs(source_onset - unit.start) <= _ONSET_AFTER else unit.start
        source_span = max(source_end - source_onset, FRAME_SECONDS)
        dubbed = _first_last(stem, max(unit.start - _ONSET_BEFORE, previous_end), unit.window_end)
        if dubbed is None:
            measured.append(MeasuredUnit(unit.id, round(source_onset, 3), round(source_span, 3), None, 0.0, None, None))
            continue
        duration = dubbed[1] - dubbed[0]
        measured.append(MeasuredUnit(
            unit.id, round(source_onset, 3), round(source_span, 3), round(dubbed[0], 3), round(duration, 3),
            round(duration / source_span, 4), round(dubbed[0] - source_onset, 3)))
    return measured


def activity_iou(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    length = max(len(a), len(b))
    a = np.pad(a, (0, length - len(a)))
    b = np.pad(b, (0, length - len(b)))
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else round(int(np.count_nonzero(a & b)) / union, 4)


def measure_sync(source_voice: str, voice_stem: str, units: Sequence[UnitWindow]) -> dict[str, object]:
    """The `sync` figures of the manifest: speech-activity IoU, share of units within ±10 % of their
    source span, onset offsets (p50/p95, absolute), and the per-unit measurements."""
    # Edges come from the unbridged readings (a bridge would carry a dub across the gap before the next
    # one, or a source span into the pause after it); the overlap from the bridged ones.
    source = energy_activity(source_voice, bridge_seconds=0.0)
    progress.report(0.5)  # one of the two readings done
    stem = energy_activity(voice_stem, bridge_seconds=0.0)
    per_unit = measure_units(source, stem, units)
    ratios = [u.duration_ratio for u in per_unit if u.duration_ratio is not None]
    offsets = [abs(u.onset_offset) for u in per_unit if u.onset_offset is not None]
    within = sum(1 for r in ratios if abs(r - 1.0) <= WITHIN)
    return {
        "method": "energy voice activity on 10 ms frames, the voice stem against the source voice",
        "speech_iou": activity_iou(bridged(source, BRIDGE_SECONDS), bridged(stem, BRIDGE_SECONDS)),
        "units": len(per_unit),
        "units_dubbed": len(ratios),
        "within_10_percent": round(within / len(per_unit), 4) if per_unit else 1.0,
        "duration_ratio_p10": _percentile(ratios, 10),
        "duration_ratio_p50": _percentile(ratios, 50),
        "duration_ratio_p90": _percentile(ratios, 90),
        "onset_offset_p50_ms": None if not offsets else round(1000 * float(np.percentile(offsets, 50))),
        "onset_offset_p95_ms": None if not offsets else round(1000 * float(np.percentile(offsets, 95))),
        "per_unit": [asdict(u) for u in per_unit],
    }
