"""The `jobs` table: creating a job with its tasks, reading it back, its status, cancelling it.

Every query takes the owner: a job that is not the caller's does not exist for them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.db import artifacts, events, tasks, uploads
from service.db.events import NewEvent
from service.domain import FINISHED
from service.errors import DubbingError


@dataclass(frozen=True)
class InputObject:
    path: str
    content_type: str
    size_bytes: int
    sha256: str
    duration_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "object_path": self.path,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "duration_seconds": round(self.duration_seconds, 3),
        }


@dataclass(frozen=True)
class NewJob:
    owner_id: str
    source_language: str
    target_languages: list[str]
    voice: InputObject
    background: InputObject | None
    idempotency_key: str | None
    request_hash: str


class IdempotencyConflict(DubbingError):
    """The same idempotency key was used before with a different request."""

    def __init__(self) -> None:
        super().__init__("idempotency_conflict", "This idempotency key was used for another request")


_JOB_COLUMNS = """id, owner_id, status, source_language, created_at, updated_at,
    voice_path, voice_content_type, voice_size_bytes, voice_sha256, voice_duration_seconds,
    background_path, background_content_type, background_size_bytes, background_sha256,
    background_duration_seconds"""


async def create(pool: asyncpg.Pool, job: NewJob) -> tuple[UUID, bool]:
    """Insert the job and one task per language in one transaction. Returns (id, created)."""
    bg = job.background
    async with pool.acquire() as conn, conn.transaction():
        job_id = await conn.fetchval(
            """INSERT INTO jobs (owner_id, source_language, voice_path, voice_content_type,
                   voice_size_bytes, voice_sha256, voice_duration_seconds, background_path,
                   background_content_type, background_size_bytes, background_sha256,
                   background_duration_seconds, idempotency_key, request_hash)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
               ON CONFLICT ON CONSTRAINT idempotency_unique DO NOTHING
               RETURNING id""",
            job.owner_id,
            job.source_language,
            job.voice.path,
            job.voice.content_type,
            job.voice.size_bytes,
            job.voice.sha256,
            job.voice.duration_seconds,
            bg.path if bg else None,
            bg.content_type if bg else None,
            bg.size_bytes if bg else None,
            bg.sha256 if bg else None,
            bg.duration_seconds if bg else None,
            job.idempotency_key,
            job.request_hash,
        )
        if job_id is None:
            assert job.idempotency_key is not None
            existing = await by_idempotency_key(conn, job.owner_id, job.idempotency_key, job.request_hash)
            assert existing is not None
            return existing, False
        await uploads.mark_used(conn, job_id, [job.voice.path] + ([bg.path] if bg else []))
        queued = await tasks.insert_for_job(conn, job_id, job.target_languages)
        await events.append(conn, job_id, queued)
        await events.notify_tasks_ready(conn)
        return job_id, True


async def by_idempotency_key(conn: asyncpg.Pool | asyncpg.Connection, owner_id: str, key: str,
                             request_hash: str) -> UUID | None:
    """The job an earlier request with this key made; IdempotencyConflict if that request was another."""
    existing = await conn.fetchrow(
        "SELECT id, request_hash FROM jobs WHERE owner_id = $1 AND idempotency_key = $2", owner_id, key
    )
    if existing is None:
        return None
    if existing["request_hash"] != request_hash:
        raise IdempotencyConflict()
    return UUID(str(existing["id"]))


async def finished_among(pool: asyncpg.Pool, job_ids: list[str]) -> list[str]:
    """Of these job ids, those that are over and have no live artifact left (their scratch can go)."""
    rows = await pool.fetch(
        f"""SELECT j.id::text AS id FROM jobs j
            WHERE j.id::text = ANY($1::text[])
              AND j.status IN ({", ".join(f"'{s}'" for s in sorted(FINISHED))})
              AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id AND a.deleted_at IS NULL)""",
        job_ids,
    )
    return [r["id"] for r in rows]


async def refresh_status(conn: asyncpg.Connection, job_id: UUID) -> list[NewEvent]:
    """Set the job's status from its tasks (sql/004: `refresh_job_status`); returns the `done`
    event if the job just ended."""
    done = await conn.fetchval("SELECT refresh_job_status($1)", job_id)
    return [NewEvent(kind=done["kind"], data=done["data"])] if done else []


async def cancel(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> bool:
    """Cancel every unfinished task. False when the job is not the caller's."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "SELECT id FROM jobs WHERE id = $1 AND owner_id = $2 FOR UPDATE", job_id, owner_id
        )
        if found is None:
            return False
        cancelled = await tasks.cancel_for_job(conn, job_id)
        if cancelled:
            cancelled.extend(await refresh_status(conn, job_id))
            await events.append(conn, job_id, cancelled)
        return True


async def owned(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> bool:
    return bool(
        await pool.fetchval("SELECT true FROM jobs WHERE id = $1 AND owner_id = $2", job_id, owner_id)
    )


async def fetch_row(pool: asyncpg.Pool | asyncpg.Connection, job_id: UUID) -> asyncpg.Record | None:
    """A job by id, for the supervisor (which works on behalf of every owner)."""
    return await pool.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)


def _inputs(row: asyncpg.Record) -> dict[str, Any]:
    def one(prefix: str) -> dict[str, Any] | None:
        if row[f"{prefix}_path"] is None:
            return None
        return InputObject(
            path=row[f"{prefix}_path"],
            content_type=row[f"{prefix}_content_type"],
            size_bytes=row[f"{prefix}_size_bytes"],
            sha256=row[f"{prefix}_sha256"],
            duration_seconds=row[f"{prefix}_duration_seconds"],
        ).to_json()

    return {"voice": one("voice"), "background": one("background")}


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "source_language": row["source_language"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "inputs": _inputs(row),
    }


async def representation(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> dict[str, Any] | None:
    """The job as the API shows it: inputs, tasks and artifacts."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1 AND owner_id = $2", job_id, owner_id
        )
        if row is None:
            return None
        return {
            **_summary(row),
            "tasks": await tasks.for_job(conn, job_id),
            "artifacts": await artifacts.for_job(conn, job_id),
        }


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(job_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Raises ValueError on anything that is not a cursor we made."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    return datetime.fromisoformat(created), UUID(job_id)


async def list_for_owner(
    pool: asyncpg.Pool, owner_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The owner's jobs, newest first, keyset-paginated on (created_at, id)."""
    if cursor:
        created, last_id = decode_cursor(cursor)
        rows = await pool.fetch(
            f"""SELECT {_JOB_COLUMNS} FROM jobs
                WHERE owner_id = $1 AND (created_at, id) < ($2, $3)
                ORDER BY created_at DESC, id DESC LIMIT $4""",
            owner_id,
            created,
            last_id,
            limit + 1,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            owner_id,
            limit + 1,
        )
    page = rows[:limit]
    job_ids = [r["id"] for r in page]
    task_rows = await pool.fetch(
        f"""SELECT job_id, {tasks.PUBLIC_COLUMNS}
           FROM language_tasks WHERE job_id = ANY($1::uuid[]) ORDER BY target_language""",
        job_ids,
    )
    by_job: dict[UUID, list[dict[str, Any]]] = {}
    for t in task_rows:
        by_job.setdefault(t["job_id"], []).append(tasks.to_json(t))
    result = [{**_summary(r), "tasks": by_job.get(r["id"], [])} for r in page]
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return result, next_cursor
