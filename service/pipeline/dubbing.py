"""Synthesize each translated segment, using the engine's own rate as the first tool for fitting.

A segment whose speech at normal rate is longer than its source span is spoken again faster, up to
`max_engine_rate`; time-stretching and placement come in the mixing stage.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from service.audio import fitting
from service.engines.protocols import Shortener
from service.engines.types import SynthesizedClip
from service.pipeline import translating
from service.pipeline.context import StageContext, run_all
from service.pipeline.workfiles import read_json, write_json

PARALLEL_SEGMENTS = 2


def timeline_duration(job: asyncpg.Record) -> float:
    """The dubbed mix lasts as long as the background, or the voice when there is none."""
    background = job["background_duration_seconds"]
    return float(background if background is not None else job["voice_duration_seconds"])


def dubbing_file(ctx: StageContext) -> Path:
    return ctx.work_dir / "dubbing.json"


async def load(ctx: StageContext) -> list[dict[str, Any]]:
    return list((await read_json(dubbing_file(ctx)))["clips"])


async def _speak(ctx: StageContext, text: str, out: Path, rate: float, usage: dict[str, float]) -> SynthesizedClip:
    clip: SynthesizedClip = await ctx.engine.synthesizer.synthesize(
        text, ctx.task.target_language, str(out), rate=rate, sample_rate=ctx.settings.sample_rate, usage=usage
    )
    return clip


async def _fitted(ctx: StageContext, segment: dict[str, Any], span: float, out: Path,
                  usage: dict[str, float]) -> tuple[SynthesizedClip, float, str, str | None]:
    """Speak the line at normal rate, then faster if it is too long; if even the stretch ceiling
    cannot make it fit, ask the translator once for a shorter line (isochrony-aware translation).
    Returns the clip, its natural duration, the text spoken and the original text when shortened."""
    settings = ctx.settings
    text = segment["text"]
    clip = await _speak(ctx, text, out, 1.0, usage)
    natural = clip.duration
    rate = fitting.choose_rate(natural, span, settings.max_engine_rate)
    if rate > 1.0:
        clip = await _speak(ctx, text, out, rate, usage)
    translator = ctx.engine.translator
    limit = span * settings.stretch_ceiling
    if clip.duration <= limit or span <= 0 or not isinstance(translator, Shortener):
        return clip, natural, text, None
    max_chars = max(int(len(text) * limit / clip.duration * 0.95), 1)
    shorter = (await translator.shorten(text, segment["source_text"], ctx.job["source_language"],
                                        ctx.task.target_language, max_chars, usage=usage)).strip()
    if not shorter or len(shorter) >= len(text):
        return clip, natural, text, None
    clip = await _speak(ctx, shorter, out, 1.0, usage)
    natural = clip.duration
    rate = fitting.choose_rate(natural, span, settings.max_engine_rate)
    if rate > 1.0:
        clip = await _speak(ctx, shorter, out, rate, usage)
    return clip, natural, shorter, text


async def run(ctx: StageContext) -> None:
    segments = await translating.load(ctx)
    timings = fitting.slots_from_segments([(s["start"], s["end"]) for s in segments], timeline_duration(ctx.job))
    clips_dir = ctx.work_dir / "clips"
    clips_dir.mkdir(exist_ok=True)
    spoken = [(s, t) for s, t in zip(segments, timings, strict=True) if s["text"]]
    clips: list[dict[str, Any] | None] = [None] * len(spoken)
    limit = asyncio.Semaphore(PARALLEL_SEGMENTS)
    done = 0

    usage: dict[str, float] = {}

    async def one(position: int, segment: dict[str, Any], timing: fitting.SegmentTiming) -> None:
        nonlocal done
        out = clips_dir / f"{segment['id']:05d}.wav"
        async with limit:
            clip, natural, text, original = await _fitted(ctx, segment, timing.source_end - timing.source_start,
                                                          out, usage)
        clips[position] = {"id": segment["id"], "index": timing.index, "path": clip.path, "text": text,
                           "shortened_from": original, "natural_duration": round(natural, 4),
                           "duration": round(clip.duration, 4), "rate": clip.rate}
        done += 1
        await ctx.progress(done / len(spoken), segment=segment["id"])

    try:
        await run_all([one(i, s, t) for i, (s, t) in enumerate(spoken)])
    finally:
        await ctx.record_usage(usage)
    await write_json(dubbing_file(ctx), {"engine": ctx.engine.synthesizer.name,
                                         "voice": ctx.engine.synthesizer.voice_for(ctx.task.target_language),
                                         "clips": clips})
    if not spoken:
        await ctx.progress(1.0, segments=0)
