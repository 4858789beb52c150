"""Translate the job's transcript into the task's language, segment boundaries kept one to one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.engines.types import EngineError
from service.stages import stt
from service.stages.context import StageContext, StageError
from service.stages.workfiles import read_json, write_json

RETRYABLE_ENGINE_CODES = frozenset({"engine_timeout"})


def translation_file(ctx: StageContext) -> Path:
    return ctx.work_dir / "translation.json"


async def load(ctx: StageContext) -> list[dict[str, Any]]:
    """The translated segments: id, start, end, source_text, text."""
    data = await read_json(translation_file(ctx))
    return list(data["segments"])


async def run(ctx: StageContext) -> None:
    if ctx.engines is None:
        raise StageError("engine_missing", "No translation engine is configured")
    transcript = await stt.load(ctx)
    source = transcript.language
    target = ctx.task.target_language
    texts = [s.text for s in transcript.segments]
    translated: list[str] = []
    if texts:
        try:
            translated = await ctx.engines.translator.translate(texts, source, target)
        except EngineError as exc:
            raise StageError(exc.code, exc.message, retryable=exc.code in RETRYABLE_ENGINE_CODES) from exc
        if len(translated) != len(texts):
            raise StageError("translation_misaligned",
                             f"The translator returned {len(translated)} segments for {len(texts)}")
    segments = [
        {"id": s.id, "start": s.start, "end": s.end, "source_text": s.text, "text": t.strip()}
        for s, t in zip(transcript.segments, translated, strict=True)
    ]
    await write_json(translation_file(ctx), {"source_language": source, "target_language": target,
                                             "engine": ctx.engines.translator.name, "segments": segments})
    await ctx.progress(1.0, segments=len(segments))
