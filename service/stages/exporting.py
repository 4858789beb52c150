"""Captions timed to the dubbed speech, the sync figures measured from the audio, the manifest, and
the upload of every artifact."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import msgspec

from service.audio.sync import UnitWindow, measure_sync
from service.db import artifacts, tasks, translations
from service.db.artifacts import StoredArtifact
from service.db.jobs import InputObject
from service.domain import ArtifactKind, InputKind
from service.stages import captions, dubbed_media, outputs, proofread, stt
from service.stages.context import StageContext
from service.stages.mixing import OUTPUTS, web_name
from service.stages.outputs import Mixdown, PlacedUnit, Synthesis, Translation
from service.stages.publish import publish
from service.stages.workfiles import write_json


def _artifact_entry(artifact: StoredArtifact) -> dict[str, Any]:
    return {"name": artifact.name, "kind": artifact.kind, "object_path": artifact.object_path,
            "sha256": artifact.sha256, "size_bytes": artifact.size_bytes, "content_type": artifact.content_type,
            "expires_at": artifact.expires_at.isoformat()}


def _input_entry(stored: InputObject | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {"object_path": stored.object_path, "sha256": stored.sha256, "duration_seconds": stored.duration_seconds}


async def _measure(ctx: StageContext, units: list[PlacedUnit]) -> dict[str, Any]:
    """Speech activity of the rendered voice stem against the source voice (see `audio/sync.py`)."""
    windows = [UnitWindow(u.id, u.source_start, u.source_end, u.next_start) for u in units]
    stem = str(ctx.work_dir / OUTPUTS["voice_stem"])
    async with ctx.input_copy(InputKind.VOICE) as source:
        measured: dict[str, Any] = await ctx.in_pool_reporting(0.0, 0.2, measure_sync, source, stem, windows)
    return measured


async def run(ctx: StageContext) -> None:
    work = ctx.work_dir
    mixdown = await outputs.load(work, Mixdown)
    timed = [(u.placed_start, u.placed_end, u.target_text) for u in mixdown.units]
    cues = captions.build_cues(timed, max_cps=ctx.settings.caption_max_cps,
                               timeline_end=float(mixdown.mix["duration"]),  # type: ignore[arg-type]
                               speakers=[u.speaker for u in mixdown.units])
    await anyio.Path(work / "captions.srt").write_text(captions.to_srt(cues))
    await anyio.Path(work / "captions.vtt").write_text(captions.to_vtt(cues))
    # A video's dub track is encoded beside the sync measurement and the uploads; the remux then only copies.
    encoding = (asyncio.create_task(dubbed_media.dub_track(ctx, str(work / OUTPUTS["master_wav"])))
                if dubbed_media.makes_video(ctx) else None)
    try:
        measured = await _measure(ctx, mixdown.units)
        await ctx.progress(0.2)
        revision = await translations.revision_of(ctx.pool, ctx.task.id)

        uploads = [
            (ArtifactKind.MASTER_WAV, OUTPUTS["master_wav"]),
            (ArtifactKind.MASTER_WEB, web_name(ctx)),
            (ArtifactKind.VOICE_STEM, OUTPUTS["voice_stem"]),
            (ArtifactKind.CAPTIONS_SRT, "captions.srt"),
            (ArtifactKind.CAPTIONS_VTT, "captions.vtt"),
        ]
        published: list[StoredArtifact] = []
        for done, (kind, name) in enumerate(uploads, start=1):
            published.append(await publish(ctx, kind, str(work / name), name, revision))
            await ctx.progress(0.2 + 0.6 * done / len(uploads), artifact=kind)
        if encoding is not None:
            transcript, _ = await stt.load(ctx)
            video = await dubbed_media.publish_video(ctx, await encoding, str(work / "captions.vtt"),
                                                     transcript.language, revision)
            if video is not None:
                published.append(video)
            await ctx.progress(0.9, artifact=ArtifactKind.VIDEO)
    finally:
        if encoding is not None and not encoding.done():
            encoding.cancel()
            await asyncio.gather(encoding, return_exceptions=True)

    caption_figures = {"cues": len(cues), "max_cps": ctx.settings.caption_max_cps,
                       "reading_lag_max_seconds": captions.reading_lag(cues, timed)}
    manifest = await _manifest(ctx, mixdown, measured, caption_figures, published)
    manifest["revision"] = revision
    await write_json(work / "manifest.json", manifest)
    manifest_row = await publish(ctx, ArtifactKind.MANIFEST, str(work / "manifest.json"), "manifest.json", revision)
    await _record_render(ctx, revision, mixdown, cues)
    ctx.figures.update(artifacts=len(published) + 1, cues=len(cues),
                       bytes=sum(a.size_bytes for a in [*published, manifest_row]))
    await ctx.progress(1.0, artifact="manifest")


async def _record_render(ctx: StageContext, revision: int, mixdown: Mixdown, cues: list[captions.Cue]) -> None:
    """What this render used per segment (for `stale`) and which segments each caption cue shows (for the
    proofread round-trip), kept with its revision."""
    translation = await outputs.load(ctx.work_dir, Translation)
    rendered = [(u.id, u.text, u.start, u.end) for u in translation.units]
    records = proofread.cue_records(cues, [(u.id, u.placed_start, u.target_text) for u in mixdown.units])
    await translations.record_render(ctx.pool, ctx.task.job_id, ctx.task.target_language, revision, rendered,
                                     records)


def _segment(unit: PlacedUnit, measured: dict[str, Any] | None) -> dict[str, Any]:
    span = round(unit.source_end - unit.source_start, 4)
    return {
        "id": unit.id, "group": unit.group, "speaker": unit.speaker,
        "source_text": unit.source_text, "target_text": unit.target_text,
        "source_start": unit.source_start, "source_end": unit.source_end, "source_span": span,
        "placed_start": unit.placed_start, "placed_end": unit.placed_end, "dubbed_duration": unit.dubbed_duration,
        "rate": unit.rate, "stretch": unit.stretch, "overflowed": unit.overflowed, "cut_seconds": unit.cut_seconds,
        "shortened_from": unit.shortened_from,
        "measured": None if measured is None else {
            "source_onset": measured["source_onset"], "source_span": measured["source_span"],
            "dubbed_onset": measured["dubbed_onset"], "dubbed_duration": measured["dubbed_duration"],
            "duration_ratio": measured["duration_ratio"], "onset_offset": measured["onset_offset"]},
    }


async def _manifest(ctx: StageContext, mixdown: Mixdown, measured: dict[str, Any], caption_figures: dict[str, Any],
                    published: list[StoredArtifact]) -> dict[str, Any]:
    transcript, _ = await stt.load(ctx)
    detection = await stt.detection(ctx)
    translation = await outputs.load(ctx.work_dir, Translation)
    synthesis = await outputs.load(ctx.work_dir, Synthesis)
    job_level = await artifacts.job_level(ctx.pool, ctx.task.job_id)
    mix = mixdown.mix
    per_unit = {m["id"]: m for m in measured.pop("per_unit")}
    manifest: dict[str, Any] = {
        "job_id": str(ctx.task.job_id),
        "task_id": str(ctx.task.id),
        "source_language": transcript.language,
        "target_language": ctx.task.target_language,
        "pivot": translation.pivot,
        "detection": detection,
        "engines": {
            "stt": {"engine": transcript.engine, "model": transcript.model},
            "translation": {"engine": translation.engine},
            "tts": {"engine": synthesis.engine, "voice": synthesis.voice},
        },
        "speakers": [msgspec.to_builtins(s) for s in synthesis.speakers],
        "inputs": {
            "voice": _input_entry(ctx.job.voice),
            "background": _input_entry(ctx.job.background),
        },
        "media": ctx.job.media.public() if ctx.job.media is not None else None,
        "segments": [_segment(u, per_unit.get(u.id)) for u in mixdown.units],
        # Words the translator did not know and left in the source language (0 where it cannot tell).
        "untranslated_words": translation.untranslated_words,
        "loudness": {
            # A media job's master keeps its parts' level (the original's), not a loudness target.
            "target_lufs": ctx.settings.target_lufs if ctx.job.media is None else None,
            "true_peak_ceiling_dbtp": ctx.settings.true_peak_dbtp,
            "integrated_lufs": mix["integrated_lufs"],
            "true_peak_dbtp": mix["true_peak_dbtp"],
            "loudness_range_lu": mix["lra"],
            "gain_db": mix["gain_db"],
            "limited": mix["limited"],
        },
        "sync": {**measured, "planned": mixdown.planned_sync},
        "captions": caption_figures,
        "duration_seconds": mix["duration"],
        "usage": await tasks.usage_of(ctx.pool, ctx.task.id),
        "artifacts": [_artifact_entry(r) for r in published] + [_artifact_entry(r) for r in job_level],
    }
    if not transcript.segments:
        manifest["note"] = "No speech was found in the voice recording; the mix carries no dubbed speech."
    return manifest
