"""The `artifacts` table: what a job produced, where it lives, its hash, size and expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
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
    revision: int = 1  # the language's revision it was rendered at (sql/034)


_COLUMNS = """id, job_id, task_id, target_language, kind, object_path, sha256, size_bytes, content_type, revision,
    created_at, expires_at"""


@dataclass(frozen=True, kw_only=True)
class StoredArtifact(NewArtifact):
    """An artifact row: what a job produced (a `NewArtifact`, recorded) and until when it is kept."""

    id: UUID
    created_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredArtifact:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def name(self) -> str:
        """The file's name: the last part of its object path."""
        return self.object_path.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        """As the API lists it (`Artifact` in routes/models.py)."""
        return {
            "id": str(self.id),
            "kind": self.kind,
            "target_language": self.target_language,
            "revision": self.revision,
            "object_path": self.object_path,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


async def record(conn: asyncpg.Connection | asyncpg.Pool, artifact: NewArtifact, ttl: timedelta) -> StoredArtifact:
    """Insert or replace (a retried stage re-uploads) the artifact row of its revision."""
    row = await conn.fetchrow(
        f"""INSERT INTO artifacts (job_id, task_id, target_language, kind, object_path, sha256, size_bytes,
                                   content_type, expires_at, revision)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval, $10)
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
        artifact.revision,
    )
    assert row is not None
    return StoredArtifact.from_row(row)


async def job_level(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> list[StoredArtifact]:
    """The job's own live artifacts (its transcript), as the manifest lists them."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM artifacts WHERE job_id = $1 AND task_id IS NULL AND deleted_at IS NULL", job_id
    )
    return [StoredArtifact.from_row(r) for r in rows]


@dataclass(frozen=True)
class StoredObject:
    id: UUID
    object_path: str
    size_bytes: int


# Past their expiry, or of a job its owner deleted (including one a stage was still writing at that moment).
_DUE = """a.deleted_at IS NULL AND (a.expires_at <= now()
    OR EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.job_id AND j.deleted_at IS NOT NULL))"""


@asynccontextmanager
async def to_remove(pool: asyncpg.Pool, limit: int, job_id: UUID | None = None) -> AsyncIterator[list[StoredObject]]:
    """Up to `limit` artifacts whose files are due to go, locked (SKIP LOCKED: a concurrent run takes others), or
    every live artifact of `job_id` (its owner deleted it). The caller deletes the files inside the block; when it
    ends without an error the rows are marked `deleted_at` (rows stay, so operators still see what existed)."""
    async with pool.acquire() as conn, conn.transaction():
        if job_id is None:
            rows = await conn.fetch(
                f"""SELECT a.id, a.object_path, a.size_bytes FROM artifacts a WHERE {_DUE}
                    ORDER BY a.expires_at LIMIT $1 FOR UPDATE OF a SKIP LOCKED""", limit)
        else:
            rows = await conn.fetch(
                """SELECT id, object_path, size_bytes FROM artifacts WHERE job_id = $1 AND deleted_at IS NULL
                   FOR UPDATE""", job_id)
        batch = [StoredObject(r["id"], r["object_path"], r["size_bytes"]) for r in rows]
        yield batch
        if batch:
            await conn.execute("UPDATE artifacts SET deleted_at = now() WHERE id = ANY($1::uuid[])",
                               [a.id for a in batch])


async def due(pool: asyncpg.Pool) -> tuple[int, int]:
    """(artifacts, bytes) `to_remove` would take now, changing nothing."""
    row = await pool.fetchrow(
        f"SELECT count(*) AS n, coalesce(sum(a.size_bytes), 0) AS bytes FROM artifacts a WHERE {_DUE}")
    assert row is not None
    return int(row["n"]), int(row["bytes"])


async def for_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID,
                  revision: int | None = None) -> list[StoredArtifact]:
    """The job's live artifacts (not yet removed by retention): of each language the latest revision's, or those
    of `revision` (the job's own, its transcript, either way)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM (
                SELECT DISTINCT ON (target_language, kind) {_COLUMNS} FROM artifacts
                WHERE job_id = $1 AND deleted_at IS NULL AND expires_at > now()
                  AND ($2::int IS NULL OR revision = $2 OR target_language IS NULL)
                ORDER BY target_language, kind, revision DESC) latest
            ORDER BY target_language NULLS FIRST, kind""",
        job_id, revision,
    )
    return [StoredArtifact.from_row(r) for r in rows]
