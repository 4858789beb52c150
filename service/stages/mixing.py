"""Fit each clip to its unit's span, lay the voice track, duck the background under it, mix, normalise.

A clip still off its span after the dubbing stage's rate is time-stretched (pitch kept) both ways,
within the stretch ceiling and the tempo floor; it starts at its unit's source onset and may run into
the silence after the unit, never past the next unit's start. Every piece of audio work runs in the
supervisor's process pool on files, never arrays.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import anyio

from service import scratch
from service.audio import fitting
from service.audio.decode import decode_to_wav
from service.audio.fitting import SegmentTiming
from service.audio.mix import MixSettings, mix
from service.audio.stretch import time_stretch
from service.audio.voice_track import PlacedClip, build_voice_track
from service.domain import InputKind
from service.stages import dubbed_media, outputs, timeline
from service.stages.context import StageContext, run_all
from service.stages.outputs import Clip, Fitted, Mixdown, PlacedUnit, Synthesis, TranslatedUnit, Translation

OUTPUTS = {"master_wav": "master.wav", "voice_stem": "voice_stem.wav"}


def web_name(ctx: StageContext) -> str:
    return f"master.{ctx.settings.web_format}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def mix_settings(ctx: StageContext, previous: dict[str, object] | None = None) -> MixSettings:
    """The mix's settings; a re-render keeps the `previous` render's gain and premix figures (`MixSettings`)."""
    settings = ctx.settings
    gain = _number((previous or {}).get("gain_db"))
    premix, oversample = None, None
    if previous is not None and gain is not None and "oversample" in previous:  # rendered by this version on
        premix = (_number(previous.get("premix_integrated_lufs")), _number(previous.get("premix_true_peak_dbtp")),
                  _number(previous.get("voice_true_peak_dbtp")))
        oversample = (int(_number(previous.get("oversample")) or 0), int(_number(previous.get("stem_oversample")) or 0))
    return MixSettings(sample_rate=settings.sample_rate, duck_db=settings.duck_db, target_lufs=settings.target_lufs,
                       true_peak_dbtp=settings.true_peak_dbtp,
                       web_format="opus" if settings.web_format == "opus" else "mp3", keep_gain_db=gain,
                       keep_premix=premix, keep_oversample=oversample)


async def _previous_mix(ctx: StageContext) -> dict[str, object] | None:
    """The figures of this language's last render (a re-render keeps its gain when it still fits)."""
    if not await outputs.exists(ctx.work_dir, Mixdown):
        return None
    return dict((await outputs.load(ctx.work_dir, Mixdown)).mix)


async def _fit(ctx: StageContext, unit: TranslatedUnit, slot: SegmentTiming, clip: Clip,
               limit: asyncio.Semaphore) -> tuple[PlacedClip, PlacedUnit]:
    settings = ctx.settings
    max_tempo = settings.max_engine_rate * settings.stretch_ceiling
    stretch = fitting.choose_stretch(clip.duration, slot.span, settings.stretch_ceiling, rate=clip.rate,
                                     min_tempo=settings.min_tempo, max_tempo=max_tempo)
    stretch = fitting.within_slot(clip.duration, stretch, slot.room, settings.stretch_ceiling, rate=clip.rate,
                                  max_tempo=max_tempo)
    path, duration = clip.path, clip.duration
    if stretch != 1.0:
        record = Path(path).with_suffix(".fit.json")
        done = await outputs.load_piece(record, Fitted)
        if done is not None and done.source == path and done.stretch == stretch:
            path, duration = done.path, done.duration  # stretched by an earlier, interrupted attempt
        else:
            stretched = str(Path(path).with_suffix(".fit.wav"))
            async with limit:
                duration = await ctx.in_pool(time_stretch, path, stretched, stretch, settings.sample_rate)
            await outputs.save_piece(record, Fitted(path, stretch, stretched, duration))
            path = stretched
    placement = fitting.place(slot, duration)
    placed = PlacedUnit(
        id=unit.id, group=unit.group, source_text=unit.source_text, target_text=clip.text,
        source_start=slot.source_start, source_end=slot.source_end, next_start=slot.next_start,
        placed_start=round(placement.placed_start, 4), placed_end=round(placement.placed_end, 4),
        natural_duration=clip.natural_duration, rate=round(clip.rate, 4), stretch=round(stretch, 4),
        overflowed=placement.overflowed, cut_seconds=round(placement.cut_seconds, 4),
        shortened_from=clip.shortened_from, speaker=unit.speaker)
    return PlacedClip(path, placement.placed_start, placement.placed_end - placement.placed_start), placed


async def _background(ctx: StageContext) -> str:
    """The job's background bed at the working rate, decoded once for all its languages."""
    path = scratch.source_dir(ctx.settings.scratch_dir, ctx.task.job_id) / f"background-{ctx.settings.sample_rate}.wav"
    if not await anyio.Path(path).exists():
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        async with ctx.input_copy(InputKind.BACKGROUND) as original:
            await ctx.in_pool(decode_to_wav, original, str(path), ctx.settings.sample_rate)
    return str(path)


def planned_sync(units: list[PlacedUnit]) -> dict[str, object]:
    """What the plan says (the manifest's measured figures come from the audio, in exporting)."""
    records = [fitting.FitRecord(u.id, u.source_start, u.source_end, u.placed_start, u.placed_end, u.rate, u.stretch,
                                 u.overflowed) for u in units]
    figures = dataclasses.asdict(fitting.sync_figures(records))
    within = [u for u in units if u.source_end > u.source_start
              and abs(u.dubbed_duration / (u.source_end - u.source_start) - 1.0) <= 0.10]
    figures["within_10_percent"] = round(len(within) / len(units), 4) if units else 1.0
    return figures


async def run(ctx: StageContext) -> None:
    settings = ctx.settings
    translation = await outputs.load(ctx.work_dir, Translation)
    synthesis = await outputs.load(ctx.work_dir, Synthesis)
    clips = {c.id: c for c in synthesis.clips}
    slots = timeline.slots(translation.units, ctx.job)
    todo = [(u, s, clips[u.id]) for u, s in zip(translation.units, slots, strict=True) if u.id in clips]

    fitted: dict[int, tuple[PlacedClip, PlacedUnit]] = {}
    # Stretching runs in the process pool: keep every worker busy, not one clip at a time.
    limit = asyncio.Semaphore(max(settings.cpu_workers, 1))

    async def fit(unit: TranslatedUnit, slot: SegmentTiming, clip: Clip) -> None:
        fitted[unit.id] = await _fit(ctx, unit, slot, clip, limit)
        await ctx.progress(0.5 * len(fitted) / len(todo), unit=unit.id)

    await run_all([fit(u, s, c) for u, s, c in todo])
    placed = [fitted[u.id] for u, _, _ in todo]
    await ctx.progress(0.5)

    work = ctx.work_dir
    voice_track = str(work / "voice_track.wav")
    await ctx.in_pool_reporting(0.5, 0.6, build_voice_track, [p for p, _ in placed], timeline.duration(ctx.job),
                                voice_track, settings.sample_rate)
    await ctx.progress(0.6)
    targets = (str(work / OUTPUTS["master_wav"]), str(work / web_name(ctx)), str(work / OUTPUTS["voice_stem"]))
    knobs = mix_settings(ctx, await _previous_mix(ctx))
    background: str | None
    if ctx.job.media is not None:  # the separated background in the window, the original outside it
        # The dub at the original voice's loudness and the master at the level of its parts: the bed and the
        # original outside the window keep theirs. The bed and the voice's level are independent: side by side.
        background, ctx.figures["voice_gain_db"] = await asyncio.gather(
            dubbed_media.bed(ctx), dubbed_media.match_voice_level(ctx, voice_track))
        knobs = dataclasses.replace(knobs, target_lufs=None)
    else:
        background = await _background(ctx) if ctx.job.background else None
    await ctx.progress(0.65)
    result = await ctx.in_pool_reporting(0.65, 1.0, mix, voice_track, background, *targets, knobs)
    units = [u for _, u in placed]
    await outputs.save(work, Mixdown(units, dataclasses.asdict(result), planned_sync(units)))
    ctx.figures.update(units=len(units), stretched=sum(1 for u in units if u.stretch != 1.0),
                       overflowed=sum(1 for u in units if u.overflowed))
    await ctx.progress(1.0, overflow_count=sum(1 for u in units if u.overflowed))
