"""The `transcripts` table: one speech-to-text run per job, shared by all its language tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class TranscriptState:
    """`mine`: the caller holds the lease and must transcribe; `running`: someone else does."""

    state: str  # mine | running | ready | failed
    data: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None


async def acquire(pool: asyncpg.Pool, job_id: UUID, owner: str, lease_seconds: float) -> TranscriptState:
    """Take the transcription lease if nobody holds a live one, else report where it stands."""
    taken = await pool.fetchval(
        """INSERT INTO transcripts (job_id, state, lease_owner, lease_expires_at)
           VALUES ($1, 'running', $2, now() + make_interval(secs => $3))
           ON CONFLICT (job_id) DO UPDATE
               SET lease_owner = EXCLUDED.lease_owner, lease_expires_at = EXCLUDED.lease_expires_at,
                   updated_at = now()
               WHERE transcripts.state = 'running'
                 AND (transcripts.lease_expires_at < now() OR transcripts.lease_owner = EXCLUDED.lease_owner)
           RETURNING lease_owner""",
        job_id,
        owner,
        lease_seconds,
    )
    if taken == owner:
        return TranscriptState("mine")
    row = await pool.fetchrow(
        "SELECT state, data, error_code, error_message FROM transcripts WHERE job_id = $1", job_id
    )
    assert row is not None
    return TranscriptState(row["state"], row["data"], row["error_code"], row["error_message"])


async def ready(pool: asyncpg.Pool, job_id: UUID) -> dict[str, Any] | None:
    """The job's finished transcript, or None while it is not ready."""
    row = await pool.fetchrow("SELECT state, data FROM transcripts WHERE job_id = $1", job_id)
    return dict(row["data"]) if row is not None and row["state"] == "ready" else None


async def extend(pool: asyncpg.Pool, job_id: UUID, owner: str, lease_seconds: float) -> bool:
    return bool(await pool.fetchval(
        """UPDATE transcripts SET lease_expires_at = now() + make_interval(secs => $3)
           WHERE job_id = $1 AND lease_owner = $2 AND state = 'running' RETURNING true""",
        job_id, owner, lease_seconds,
    ))


async def complete(pool: asyncpg.Pool, job_id: UUID, owner: str, transcript: dict[str, Any]) -> bool:
    return bool(await pool.fetchval(
        """UPDATE transcripts
           SET state = 'ready', data = $3, language = $4, engine = $5, model = $6, segment_count = $7,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
           WHERE job_id = $1 AND lease_owner = $2 AND state = 'running' RETURNING true""",
        job_id, owner, transcript, transcript.get("language"), transcript.get("engine"), transcript.get("model"),
        len(transcript.get("segments", [])),
    ))


async def fail(pool: asyncpg.Pool, job_id: UUID, owner: str, code: str, message: str) -> None:
    """A permanent failure: every language of the job fails with the same reason."""
    await pool.execute(
        """UPDATE transcripts SET state = 'failed', error_code = $3, error_message = $4,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
           WHERE job_id = $1 AND lease_owner = $2 AND state = 'running'""",
        job_id, owner, code, message[:2000],
    )


async def give_up_lease(pool: asyncpg.Pool, job_id: UUID, owner: str) -> None:
    """A passing failure: let the next task that looks take over at once."""
    await pool.execute(
        "UPDATE transcripts SET lease_expires_at = now() - interval '1 second' "
        "WHERE job_id = $1 AND lease_owner = $2 AND state = 'running'",
        job_id, owner,
    )
