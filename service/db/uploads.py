"""The `uploads` table: the signed upload URLs handed out, and which of them a job has used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Upload:
    object_path: str
    owner_id: str
    kind: str
    content_type: str
    declared_size_bytes: int
    filename: str | None = None  # as the uploader's computer named it


async def record(pool: asyncpg.Pool, uploads: list[Upload], url_expires_at: datetime) -> None:
    await pool.executemany(
        """INSERT INTO uploads (object_path, owner_id, kind, content_type, declared_size_bytes, url_expires_at,
                                filename)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [(u.object_path, u.owner_id, u.kind, u.content_type, u.declared_size_bytes, url_expires_at, u.filename)
         for u in uploads],
    )


async def find(pool: asyncpg.Pool, owner_id: str, object_path: str) -> Upload | None:
    """The caller's upload of that path (not removed by retention), or None."""
    row = await pool.fetchrow(
        """SELECT object_path, owner_id, kind, content_type, declared_size_bytes, filename FROM uploads
           WHERE object_path = $1 AND owner_id = $2 AND deleted_at IS NULL""",
        object_path, owner_id,
    )
    return None if row is None else Upload(**dict(row))


async def mark_used(conn: asyncpg.Connection, job_id: UUID, paths: list[str]) -> None:
    """Inside the job's creating transaction: these uploads are now a job's inputs.

    Only uploads no job used yet are written, locked in path order: concurrent jobs made from the same
    uploads (a re-dub into other languages) then never wait on each other's rows in opposite orders.
    """
    await conn.execute(
        """UPDATE uploads SET first_job_id = $1, used_at = now()
           WHERE object_path IN (SELECT object_path FROM uploads
                                 WHERE object_path = ANY($2::text[]) AND used_at IS NULL
                                 ORDER BY object_path FOR UPDATE)
             AND used_at IS NULL""",
        job_id, paths,
    )


@dataclass(frozen=True)
class UnusedUpload:
    object_path: str
    declared_size_bytes: int


# No job used it, it is older than $1 hours, and its signed URL can no longer write it.
_UNUSED_DUE = """used_at IS NULL AND deleted_at IS NULL AND created_at < now() - make_interval(hours => $1)
    AND url_expires_at < now()"""


@asynccontextmanager
async def unused_to_remove(pool: asyncpg.Pool, ttl_hours: float, limit: int) -> AsyncIterator[list[UnusedUpload]]:
    """Up to `limit` uploads no job used that are due, locked (SKIP LOCKED: a concurrent run takes others). The
    caller deletes their objects inside the block; when it ends without an error the rows are marked deleted."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"""SELECT object_path, declared_size_bytes FROM uploads WHERE {_UNUSED_DUE}
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            ttl_hours, limit)
        batch = [UnusedUpload(r["object_path"], r["declared_size_bytes"]) for r in rows]
        yield batch
        await mark_deleted(conn, [u.object_path for u in batch])


async def unused_due(pool: asyncpg.Pool, ttl_hours: float) -> tuple[int, int]:
    """(uploads, declared bytes) `unused_to_remove` would take now, changing nothing."""
    row = await pool.fetchrow(
        f"SELECT count(*) AS n, coalesce(sum(declared_size_bytes), 0) AS bytes FROM uploads WHERE {_UNUSED_DUE}",
        ttl_hours)
    assert row is not None
    return int(row["n"]), int(row["bytes"])


async def mark_deleted(conn: asyncpg.Connection | asyncpg.Pool, paths: list[str]) -> None:
    """Their objects are gone from storage (retention, or the owner deleted the job)."""
    if paths:
        await conn.execute("UPDATE uploads SET deleted_at = now() WHERE object_path = ANY($1::text[]) "
                           "AND deleted_at IS NULL", paths)
