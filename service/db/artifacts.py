"""The `artifacts` table: what a job produced, where it lives, its hash, size and expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class NewArtifact:
    job_id: UUID
    task_id: UUID | None
    target_language: str | None
    kind: str
    object_path: str
    sha256: str
    size_bytes: int
    content_type: str


_COLUMNS = """id, job_id, task_id, target_language, kind, object_path, sha256, size_bytes, content_type,
    created_at, expires_at"""


def to_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "target_language": row["target_language"],
        "object_path": row["object_path"],
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "created_at": row["created_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat(),
    }


async def record(conn: asyncpg.Connection | asyncpg.Pool, artifact: NewArtifact, ttl: timedelta) -> dict[str, Any]:
    """Insert or replace (a retried stage re-uploads) the artifact row."""
    row = await conn.fetchrow(
        f"""INSERT INTO artifacts (job_id, task_id, target_language, kind, object_path, sha256, size_bytes,
                                   content_type, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)
            ON CONFLICT ON CONSTRAINT one_artifact_per_kind DO UPDATE SET
                object_path = EXCLUDED.object_path, sha256 = EXCLUDED.sha256,
                size_bytes = EXCLUDED.size_bytes, content_type = EXCLUDED.content_type,
                created_at = now(), expires_at = EXCLUDED.expires_at, deleted_at = NULL
            RETURNING {_COLUMNS}""",
        artifact.job_id,
        artifact.task_id,
        artifact.target_language,
        artifact.kind,
        artifact.object_path,
        artifact.sha256,
        artifact.size_bytes,
        artifact.content_type,
        ttl,
    )
    assert row is not None
    return to_json(row)


async def job_level(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> list[dict[str, Any]]:
    """The job's own live artifacts (its transcript), as the manifest lists them."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM artifacts WHERE job_id = $1 AND task_id IS NULL AND deleted_at IS NULL", job_id
    )
    return [to_json(r) for r in rows]


async def expired(pool: asyncpg.Pool, limit: int) -> list[tuple[UUID, str]]:
    """Up to `limit` artifacts past their expiry whose files are still there: (id, object_path)."""
    rows = await pool.fetch(
        """SELECT id, object_path FROM artifacts
           WHERE deleted_at IS NULL AND expires_at <= now()
           ORDER BY expires_at LIMIT $1""",
        limit,
    )
    return [(r["id"], r["object_path"]) for r in rows]


async def mark_deleted(pool: asyncpg.Pool, ids: list[UUID]) -> None:
    await pool.execute("UPDATE artifacts SET deleted_at = now() WHERE id = ANY($1::uuid[])", ids)


async def for_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> list[dict[str, Any]]:
    """The job's live artifacts (not yet removed by retention)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM artifacts
            WHERE job_id = $1 AND deleted_at IS NULL AND expires_at > now()
            ORDER BY target_language NULLS FIRST, kind""",
        job_id,
    )
    return [to_json(r) for r in rows]
