"""Put a finished file into storage and record it: hash, size, content type, expiry, event."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from service import artifacts, tasks
from service.artifacts import NewArtifact
from service.audio.probe import sha256_of
from service.stages.context import LeaseLost, StageContext

CONTENT_TYPES = {
    "master_wav": "audio/wav",
    "voice_stem": "audio/wav",
    "master_web": "audio/mpeg",
    "captions_srt": "application/x-subrip",
    "captions_vtt": "text/vtt",
    "manifest": "application/json",
    "transcript_json": "application/json",
    "transcript_srt": "application/x-subrip",
    "transcript_vtt": "text/vtt",
}


def object_path(ctx: StageContext, filename: str, job_level: bool) -> str:
    folder = "source" if job_level else ctx.task.target_language
    return f"{ctx.job['owner_id']}/jobs/{ctx.task.job_id}/{folder}/{filename}"


async def publish(
    ctx: StageContext, kind: str, local_file: str, filename: str, *, job_level: bool = False,
    content_type: str | None = None,
) -> dict[str, Any]:
    content_type = content_type or CONTENT_TYPES[kind]
    digest = await asyncio.get_running_loop().run_in_executor(ctx.executor, sha256_of, local_file)
    path = object_path(ctx, filename, job_level)
    info = await ctx.storage.write_file(path, local_file, content_type)
    row = await artifacts.record(
        ctx.pool,
        NewArtifact(
            job_id=ctx.task.job_id,
            task_id=None if job_level else ctx.task.id,
            target_language=None if job_level else ctx.task.target_language,
            kind=kind,
            object_path=path,
            sha256=digest,
            size_bytes=info.size_bytes,
            content_type=content_type,
        ),
        timedelta(hours=ctx.settings.artifact_ttl_hours),
    )
    public = {k: row[k] for k in ("id", "kind", "target_language", "content_type", "size_bytes", "sha256",
                                  "expires_at")}
    if not await tasks.record_artifact(ctx.pool, ctx.task.id, ctx.lease_owner, public):
        raise LeaseLost()
    return row
