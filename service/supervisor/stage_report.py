"""What a finished stage leaves behind: one log line with its duration and figures, a histogram observation, and
the data of the `stage` event that ends it (which `ops.stage_durations` reads back from `task_events`)."""

from __future__ import annotations

from typing import Any

import structlog

from service import metrics
from service.db.jobs import StoredJob

log = structlog.get_logger(__name__)


def finished(stage: str, engine: str, seconds: float, figures: dict[str, Any], job: StoredJob) -> dict[str, Any]:
    """Log and measure the stage; returns the event data (`finished_stage`, `engine`, `stage_seconds`, `figures`).
    Figures always hold `audio_seconds` (the input's length) besides what the stage counted itself."""
    figures = {"audio_seconds": round(job.voice.duration_seconds, 3), **figures}
    seconds = round(seconds, 3)
    log.info("stage.finished", seconds=seconds, **figures)
    metrics.stage_finished(stage, engine, seconds)
    return {"finished_stage": str(stage), "engine": engine, "stage_seconds": seconds, "figures": figures}
