"""Translate the job's transcript into the task's language, segment boundaries kept one to one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.audio import fitting
from service.engines.speech_rates import char_budget
from service.errors import StageError
from service.pipeline import stt
from service.pipeline.context import StageContext
from service.pipeline.workfiles import read_json, write_json


def translation_file(ctx: StageContext) -> Path:
    return ctx.work_dir / "translation.json"


async def load(ctx: StageContext) -> list[dict[str, Any]]:
    """The translated segments: id, start, end, source_text, text."""
    data = await read_json(translation_file(ctx))
    return list(data["segments"])


def _timeline(ctx: StageContext, last_end: float) -> float:
    background = ctx.job["background_duration_seconds"]
    total = float(background if background is not None else ctx.job["voice_duration_seconds"])
    return max(total, last_end)


async def run(ctx: StageContext) -> None:
    transcript = await stt.load(ctx)
    source = transcript.language
    target = ctx.task.target_language
    texts = [s.text for s in transcript.segments]
    translated: list[str] = []
    usage: dict[str, float] = {}
    if texts:
        # Each line gets the characters its source span can hold when spoken at a natural pace.
        timings = fitting.slots_from_segments([(s.start, s.end) for s in transcript.segments],
                                              _timeline(ctx, transcript.segments[-1].end))
        budgets: list[int | None] = [char_budget(t.source_end - t.source_start, target) for t in timings]
        translated = await ctx.engine.translator.translate(texts, source, target, budgets=budgets, usage=usage)
        await ctx.record_usage(usage)
        if len(translated) != len(texts):
            raise StageError("translation_misaligned",
                             f"The translator returned {len(translated)} segments for {len(texts)}")
    segments = [
        {"id": s.id, "start": s.start, "end": s.end, "source_text": s.text, "text": t.strip()}
        for s, t in zip(transcript.segments, translated, strict=True)
    ]
    await write_json(translation_file(ctx), {"source_language": source, "target_language": target,
                                             "engine": ctx.engine.translator.name, "segments": segments})
    await ctx.progress(1.0, segments=len(segments))
