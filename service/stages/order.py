"""The one place that knows the order of a language task's stages."""

from __future__ import annotations

QUEUED = "queued"
COMPLETE = "complete"
FAILED = "failed"
CANCELLED = "cancelled"

# The stages that do work, in the order a task passes through them.
WORK_STAGES: tuple[str, ...] = ("stt", "translating", "dubbing", "mixing", "exporting")
TERMINAL: frozenset[str] = frozenset({COMPLETE, FAILED, CANCELLED})
ALL_STAGES: tuple[str, ...] = (QUEUED, *WORK_STAGES, COMPLETE, FAILED, CANCELLED)


def first_stage() -> str:
    return WORK_STAGES[0]


def next_stage(stage: str) -> str:
    """The stage after `stage`; the last work stage is followed by `complete`."""
    if stage == QUEUED:
        return WORK_STAGES[0]
    index = WORK_STAGES.index(stage)
    return WORK_STAGES[index + 1] if index + 1 < len(WORK_STAGES) else COMPLETE


def is_terminal(stage: str) -> bool:
    return stage in TERMINAL
