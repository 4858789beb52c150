"""Put a finished file into storage and record it: hash, size, content type, expiry, event."""

from __future__ import annotations

from datetime import timedelta

from service import metrics
from service.audio.probe import sha256_of
from service.db import artifacts, tasks
from service.db.artifacts import NewArtifact, StoredArtifact
from service.domain import ArtifactKind, web_content_type
from service.errors import LeaseLost
from service.stages.context import StageContext


def object_path(ctx: StageContext, filename: str, job_level: bool, revision: int = 1) -> str:
    """Where an artifact is stored; a re-render's (revision 2 on) beside the first, so earlier revisions stay."""
    folder = "source" if job_level else ctx.task.target_language
    if revision > 1 and not job_level:
        folder = f"{folder}/r{revision}"
    return f"{ctx.job.owner_id}/jobs/{ctx.task.job_id}/{folder}/{filename}"


async def publish(ctx: StageContext, kind: ArtifactKind, local_file: str, filename: str,
                  revision: int = 1, content_type: str | None = None) -> StoredArtifact:
    """Store the file, record its artifact row (of the language's `revision`) and announce it on the stream
    (`content_type`: when the kind alone does not say it, as for a video)."""
    job_level = kind.job_level
    if content_type is None:
        content_type = (web_content_type(ctx.settings.web_format) if kind is ArtifactKind.MASTER_WEB
                        else kind.content_type)
    digest = await ctx.in_pool(sha256_of, local_file)
    path = object_path(ctx, filename, job_level, revision)
    info = await ctx.storage.write_file(path, local_file, content_type)
    metrics.artifact_written(kind, info.size_bytes)
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
            revision=1 if job_level else revision,
        ),
        timedelta(hours=ctx.settings.artifact_ttl_hours),
    )
    shown = row.to_json()
    public = {k: shown[k] for k in ("id", "kind", "target_language", "revision", "content_type", "size_bytes",
                                    "sha256", "expires_at")}
    if not await tasks.record_artifact(ctx.db, ctx.task.id, ctx.lease_owner, public):
        raise LeaseLost()
    return row
