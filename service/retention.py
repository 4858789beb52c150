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

from service.storage import Storage

BATCH = 500


@dataclass(frozen=True)
class RetentionReport:
    artifacts_deleted: int
    scratch_dirs_removed: int


async def expire_artifacts(pool: asyncpg.Pool, storage: Storage, scratch_dir: Path | None = None) -> RetentionReport:
    deleted = 0
    while True:
        rows = await pool.fetch(
            """SELECT id, object_path FROM artifacts
               WHERE deleted_at IS NULL AND expires_at <= now()
               ORDER BY expires_at LIMIT $1""",
            BATCH,
        )
        if not rows:
            break
        await storage.delete([r["object_path"] for r in rows])
        await pool.execute(
            "UPDATE artifacts SET deleted_at = now() WHERE id = ANY($1::uuid[])", [r["id"] for r in rows]
        )
        deleted += len(rows)
    removed = await _remove_finished_scratch(pool, scratch_dir) if scratch_dir else 0
    return RetentionReport(deleted, removed)


async def _remove_finished_scratch(pool: asyncpg.Pool, scratch_dir: Path) -> int:
    """Scratch files of jobs that are over and whose artifacts have all expired."""
    if not await anyio.Path(scratch_dir).exists():
        return 0
    names = [p.name for p in await anyio.to_thread.run_sync(lambda: list(scratch_dir.iterdir()))]
    finished = await pool.fetch(
        """SELECT j.id::text AS id FROM jobs j
           WHERE j.id::text = ANY($1::text[])
             AND j.status IN ('complete', 'partial', 'failed', 'cancelled')
             AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id AND a.deleted_at IS NULL)""",
        names,
    )
    for row in finished:
        await anyio.to_thread.run_sync(shutil.rmtree, scratch_dir / row["id"], True)
    return len(finished)
