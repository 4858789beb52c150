"""Captions timed to the dubbed speech, the manifest, and the upload of every artifact."""

from __future__ import annotations

from typing import Any

import anyio

from service.db import artifacts, tasks
from service.domain import ArtifactKind
from service.pipeline import captions, dubbing, mixing, stt, translating
from service.pipeline.context import StageContext
from service.pipeline.publish import publish
from service.pipeline.workfiles import read_json, write_json


def _artifact_entry(row: dict[str, Any]) -> dict[str, Any]:
    name = row["object_path"].rsplit("/", 1)[-1]
    return {"name": name, "kind": row["kind"], "object_path": row["object_path"], "sha256": row["sha256"],
            "size_bytes": row["size_bytes"], "content_type": row["content_type"], "expires_at": row["expires_at"]}


async def run(ctx: StageContext) -> None:
    work = ctx.work_dir
    mixed = await mixing.load(ctx)
    records = mixed["segments"]
    cues = captions.build_cues([(r["placed_start"], r["placed_end"], r["target_text"]) for r in records])
    await anyio.Path(work / "captions.srt").write_text(captions.to_srt(cues))
    await anyio.Path(work / "captions.vtt").write_text(captions.to_vtt(cues))

    uploads = [
        (ArtifactKind.MASTER_WAV, mixing.OUTPUTS["master_wav"]),
        (ArtifactKind.MASTER_WEB, mixing.web_name(ctx)),
        (ArtifactKind.VOICE_STEM, mixing.OUTPUTS["voice_stem"]),
        (ArtifactKind.CAPTIONS_SRT, "captions.srt"),
        (ArtifactKind.CAPTIONS_VTT, "captions.vtt"),
    ]
    published: list[dict[str, Any]] = []
    for done, (kind, name) in enumerate(uploads, start=1):
        published.append(await publish(ctx, kind, str(work / name), name))
        await ctx.progress(0.9 * done / len(uploads), artifact=kind)

    manifest = await _manifest(ctx, mixed, published)
    await write_json(work / "manifest.json", manifest)
    await publish(ctx, ArtifactKind.MANIFEST, str(work / "manifest.json"), "manifest.json")
    await ctx.progress(1.0, artifact="manifest")


async def _manifest(ctx: StageContext, mixed: dict[str, Any], published: list[dict[str, Any]]) -> dict[str, Any]:
    transcript = await stt.load(ctx)
    translation = await read_json(translating.translation_file(ctx))
    synthesis = await read_json(dubbing.dubbing_file(ctx))
    job_level = await artifacts.job_level(ctx.pool, ctx.task.job_id)
    mix_result = mixed["mix"]
    manifest: dict[str, Any] = {
        "job_id": str(ctx.task.job_id),
        "task_id": str(ctx.task.id),
        "source_language": transcript.language,
        "target_language": ctx.task.target_language,
        "engines": {
            "stt": {"engine": transcript.engine, "model": transcript.model},
            "translation": {"engine": translation["engine"]},
            "tts": {"engine": synthesis["engine"], "voice": synthesis["voice"]},
        },
        "inputs": {
            "voice": {"object_path": ctx.job["voice_path"], "sha256": ctx.job["voice_sha256"],
                      "duration_seconds": ctx.job["voice_duration_seconds"]},
            "background": None if not ctx.job["background_path"] else {
                "object_path": ctx.job["background_path"], "sha256": ctx.job["background_sha256"],
                "duration_seconds": ctx.job["background_duration_seconds"]},
        },
        "segments": [
            {"id": r["id"], "source_text": r["source_text"], "target_text": r["target_text"],
             "source_start": r["source_start"], "source_end": r["source_end"],
             "placed_start": r["placed_start"], "placed_end": r["placed_end"],
             "rate": r["rate"], "stretch": r["stretch"], "overflowed": r["overflowed"],
             "cut_seconds": r["cut_seconds"], "shortened_from": r.get("shortened_from")}
            for r in mixed["segments"]
        ],
        "loudness": {
            "target_lufs": ctx.settings.target_lufs,
            "true_peak_ceiling_dbtp": ctx.settings.true_peak_dbtp,
            "integrated_lufs": mix_result["integrated_lufs"],
            "true_peak_dbtp": mix_result["true_peak_dbtp"],
            "loudness_range_lu": mix_result["lra"],
            "gain_db": mix_result["gain_db"],
            "limited": mix_result["limited"],
        },
        "sync": mixed["sync"],
        "duration_seconds": mix_result["duration"],
        "usage": await tasks.usage_of(ctx.pool, ctx.task.id),
        "artifacts": [_artifact_entry(r) for r in published] + [_artifact_entry(r) for r in job_level],
    }
    if not transcript.segments:
        manifest["note"] = "No speech was found in the voice recording; the mix carries no dubbed speech."
    for entry in manifest["artifacts"]:
        if not isinstance(entry["expires_at"], str):
            entry["expires_at"] = entry["expires_at"].isoformat()
    return manifest
