"""Fit each synthesized segment into its slot, build the dubbed voice track, duck, mix, normalise.

Every piece of audio work runs in the supervisor's process pool on files, never arrays.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from service.audio import fitting
from service.audio.mix import MixSettings, mix
from service.audio.stretch import time_stretch
from service.audio.voice_track import PlacedClip, build_voice_track
from service.pipeline import dubbing, translating
from service.pipeline.context import StageContext, run_all
from service.pipeline.workfiles import read_json, write_json

OUTPUTS = {"master_wav": "master.wav", "voice_stem": "voice_stem.wav"}


def mixing_file(ctx: StageContext) -> Path:
    return ctx.work_dir / "mixing.json"


async def load(ctx: StageContext) -> dict[str, Any]:
    return dict(await read_json(mixing_file(ctx)))


def web_name(ctx: StageContext) -> str:
    return f"master.{ctx.settings.web_format}"


async def run(ctx: StageContext) -> None:
    loop = asyncio.get_running_loop()
    settings = ctx.settings
    segments = {s["id"]: s for s in await translating.load(ctx)}
    ordered = sorted(segments.values(), key=lambda s: s["start"])
    total = dubbing.timeline_duration(ctx.job)
    timings = fitting.slots_from_segments([(s["start"], s["end"]) for s in ordered], total)
    timing_by_id = {s["id"]: t for s, t in zip(ordered, timings, strict=True)}
    clips = [c for c in await dubbing.load(ctx) if c is not None]

    fitted: dict[int, tuple[PlacedClip, dict[str, Any]]] = {}
    # Stretching runs in the process pool: keep every worker busy, not one clip at a time.
    limit = asyncio.Semaphore(max(settings.cpu_workers, 1))

    async def fit(clip: dict[str, Any]) -> None:
        timing = timing_by_id[clip["id"]]
        span = timing.source_end - timing.source_start
        stretch = fitting.choose_stretch(clip["duration"], span, settings.stretch_ceiling)
        path, duration = clip["path"], clip["duration"]
        if stretch > 1.0:
            stretched = str(Path(path).with_suffix(".fit.wav"))
            async with limit:
                duration = await loop.run_in_executor(
                    ctx.executor, time_stretch, path, stretched, stretch, settings.sample_rate)
            path = stretched
        placement = fitting.place(timing, duration)
        record = dataclasses.asdict(fitting.fit_record(placement, clip["rate"], stretch))
        segment = segments[clip["id"]]
        fitted[clip["id"]] = (
            PlacedClip(path, placement.placed_start, placement.placed_end - placement.placed_start),
            {**record, "id": clip["id"], "source_text": segment["source_text"],
             "target_text": clip.get("text", segment["text"]), "shortened_from": clip.get("shortened_from"),
             "natural_duration": clip["natural_duration"], "cut_seconds": round(placement.cut_seconds, 4)},
        )
        if stretch > 1.0:
            await ctx.progress(0.5 * len(fitted) / max(len(clips), 1), segment=clip["id"])

    await run_all([fit(clip) for clip in clips])
    placed = [fitted[c["id"]][0] for c in clips]
    records = [fitted[c["id"]][1] for c in clips]
    await ctx.progress(0.5)

    work = ctx.work_dir
    voice_track = str(work / "voice_track.wav")
    await loop.run_in_executor(ctx.executor, build_voice_track, placed, total, voice_track, settings.sample_rate)
    await ctx.progress(0.6)
    mix_settings = MixSettings(sample_rate=settings.sample_rate, duck_db=settings.duck_db,
                               target_lufs=settings.target_lufs, true_peak_dbtp=settings.true_peak_dbtp,
                               web_format="opus" if settings.web_format == "opus" else "mp3")
    if ctx.job["background_path"]:
        async with ctx.storage.local_copy(ctx.job["background_path"]) as background:
            result = await loop.run_in_executor(
                ctx.executor, mix, voice_track, background, str(work / OUTPUTS["master_wav"]),
                str(work / web_name(ctx)), str(work / OUTPUTS["voice_stem"]), mix_settings)
    else:
        result = await loop.run_in_executor(
            ctx.executor, mix, voice_track, None, str(work / OUTPUTS["master_wav"]),
            str(work / web_name(ctx)), str(work / OUTPUTS["voice_stem"]), mix_settings)
    sync = fitting.sync_figures([fitting.FitRecord(**{k: r[k] for k in (
        "index", "source_start", "source_end", "placed_start", "placed_end", "rate", "stretch", "overflowed")})
        for r in records])
    await write_json(mixing_file(ctx), {"segments": sorted(records, key=lambda r: r["index"]),
                                        "mix": dataclasses.asdict(result), "sync": dataclasses.asdict(sync),
                                        "mix_settings": dataclasses.asdict(mix_settings)})
    await ctx.progress(1.0, overflow_count=sync.overflow_count)
