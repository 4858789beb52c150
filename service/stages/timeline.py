"""The dub's timeline, in one place: how long the mix lasts and how far each unit's dub may run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from service.audio import fitting
from service.audio.fitting import SegmentTiming
from service.db.jobs import StoredJob


class Timed(Protocol):
    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...


def duration(job: StoredJob) -> float:
    """The dubbed mix lasts as long as the background, or the voice when there is none."""
    return (job.background or job.voice).duration_seconds


def slots(units: Sequence[Timed], job: StoredJob) -> list[SegmentTiming]:
    """Each unit's span and the start of the next (the end of the timeline for the last)."""
    total = max(duration(job), max((u.end for u in units), default=0.0))
    return fitting.slots_from_segments([(u.start, u.end) for u in units], total)
