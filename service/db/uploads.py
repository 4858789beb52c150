"""The `uploads` table: the signed upload URLs handed out, and which of them a job has used."""

from __future__ import annotations

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


async def record(pool: asyncpg.Pool, uploads: list[Upload], url_expires_at: datetime) -> None:
    await pool.executemany(
        """INSERT INTO uploads (object_path, owner_id, kind, content_type, declared_size_bytes, url_expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [(u.object_path, u.owner_id, u.kind, u.content_type, u.declared_size_bytes, url_expires_at) for u in uploads],
    )


async def find(pool: asyncpg.Pool, owner_id: str, object_path: str) -> Upload | None:
    """The caller's upload of that path (not removed by retention), or None."""
    row = await pool.fetchrow(
        """SELECT object_path, owner_id, kind, content_type, declared_size_bytes FROM uploads
           WHERE object_path = $1 AND owner_id = $2 AND deleted_at IS NULL""",
        object_path, owner_id,
    )
    return None if row is None else Upload(**dict(row))


async def mark_used(conn: asyncpg.Connection, job_id: UUID, paths: list[str]) -> None:
    """Inside the job's creating transaction: these uploads are now a job's inputs."""
    await conn.execute(
        """UPDATE uploads SET first_job_id = coalesce(first_job_id, $1), used_at = coalesce(used_at, now())
           WHERE object_path = ANY($2::text[])""",
        job_id, paths,
    )


async def unused_before(pool: asyncpg.Pool, cutoff: datetime, limit: int) -> list[str]:
    """Uploads no job used, made before `cutoff` (their objects can go), locked for this caller."""
    rows = await pool.fetch(
        """SELECT object_path FROM uploads
           WHERE used_at IS NULL AND deleted_at IS NULL AND created_at < $1
           ORDER BY created_at LIMIT $2""",
        cutoff, limit,
    )
    return [r["object_path"] for r in rows]


async def mark_deleted(pool: asyncpg.Pool, paths: list[str]) -> None:
    await pool.execute("UPDATE uploads SET deleted_at = now() WHERE object_path = ANY($1::text[])", paths)
