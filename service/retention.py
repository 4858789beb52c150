"""Remove generated files once they expire (48 h by default): `dubbing retention`, from cron.

Rows stay, marked `deleted_at`, so operators can still see what existed; a file is deleted before
its row is marked, and a row whose file is already gone is marked all the same.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg

from service.db import artifacts, jobs
from service.storage import Storage

BATCH = 500


@dataclass(frozen=True)
class RetentionReport:
    artifacts_deleted: int
    scratch_dirs_removed: int


async def expire_artifacts(pool: asyncpg.Pool, storage: Storage, scratch_dir: Path | None = None) -> RetentionReport:
    deleted = 0
    while batch := await artifacts.expired(pool, BATCH):
        await storage.delete([path for _, path in batch])
        await artifacts.mark_deleted(pool, [artifact_id for artifact_id, _ in batch])
        deleted += len(batch)
    removed = await _remove_finished_scratch(pool, scratch_dir) if scratch_dir else 0
    return RetentionReport(deleted, removed)


async def _remove_finished_scratch(pool: asyncpg.Pool, scratch_dir: Path) -> int:
    """Scratch files of jobs that are over and whose artifacts have all expired."""
    if not await anyio.Path(scratch_dir).exists():
        return 0
    names = [p.name for p in await anyio.to_thread.run_sync(lambda: list(scratch_dir.iterdir()))]
    finished = await jobs.finished_among(pool, names)
    for job_id in finished:
        await anyio.to_thread.run_sync(shutil.rmtree, scratch_dir / job_id, True)
    return len(finished)
