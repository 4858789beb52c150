"""The `voice_clones` table: every voice clone a job made at a TTS provider, so that none outlives its job.

A clone is recorded before the provider is asked (`claim`: state `creating`), gets its voice id when the
provider answered (`ready`, or `unusable` when the provider wants the voice verified first), and is marked
`deleted` once the provider deleted it. The sweep asks for the live clones of jobs that are over
(`of_finished_jobs`) and for clones left `creating` (`creating`), to find those of a process that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from service.domain import FINISHED

_FINISHED_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(FINISHED)) + ")"


@dataclass(frozen=True)
class VoiceClone:
    id: int
    job_id: UUID
    speaker: str
    provider: str
    name: str
    voice_id: str | None
    state: str
    owner: str


_COLUMNS = "id, job_id, speaker, provider, name, voice_id, state, owner"


def _clone(row: asyncpg.Record) -> VoiceClone:
    return VoiceClone(row["id"], row["job_id"], row["speaker"], row["provider"], row["name"], row["voice_id"],
                      row["state"], row["owner"])


async def claim(pool: asyncpg.Pool, job_id: UUID, speaker: str, provider: str, name: str,
                owner: str) -> tuple[VoiceClone, bool]:
    """The job's live clone of `speaker`: (it, True) when the caller just claimed it and must create it."""
    row = await pool.fetchrow(
        f"""INSERT INTO voice_clones (job_id, speaker, provider, name, owner) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (job_id, speaker) WHERE state <> 'deleted' DO NOTHING RETURNING {_COLUMNS}""",
        job_id, speaker, provider, name, owner)
    if row is not None:
        return _clone(row), True
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM voice_clones WHERE job_id = $1 AND speaker = $2 AND state <> 'deleted'",
        job_id, speaker)
    if row is None:  # deleted between the two statements: try again
        return await claim(pool, job_id, speaker, provider, name, owner)
    return _clone(row), False


async def get(pool: asyncpg.Pool, clone_id: int) -> VoiceClone | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM voice_clones WHERE id = $1", clone_id)
    return _clone(row) if row is not None else None


async def created(pool: asyncpg.Pool, clone_id: int, voice_id: str, usable: bool, note: str | None = None) -> None:
    await pool.execute(
        """UPDATE voice_clones SET voice_id = $2, state = $3, note = $4, updated_at = now() WHERE id = $1""",
        clone_id, voice_id, "ready" if usable else "unusable", note)


async def deleted(pool: asyncpg.Pool, clone_id: int, note: str | None = None) -> None:
    await pool.execute(
        """UPDATE voice_clones SET state = 'deleted', deleted_at = now(), updated_at = now(),
               note = coalesce($2, note) WHERE id = $1""", clone_id, note)


async def of_finished_jobs(pool: asyncpg.Pool) -> list[VoiceClone]:
    """Live clones whose job is over (done, failed, cancelled) or deleted, or that no job row holds."""
    rows = await pool.fetch(
        f"""SELECT {", ".join("c." + c.strip() for c in _COLUMNS.split(","))} FROM voice_clones c
            LEFT JOIN jobs j ON j.id = c.job_id
            WHERE c.state <> 'deleted'
              AND (j.id IS NULL OR j.status IN {_FINISHED_SQL} OR j.deleted_at IS NOT NULL)
            ORDER BY c.id""")
    return [_clone(r) for r in rows]


async def creating(pool: asyncpg.Pool) -> list[VoiceClone]:
    """Clones asked for but not recorded as made: the sweep checks whether their owner is still alive."""
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM voice_clones WHERE state = 'creating' ORDER BY id")
    return [_clone(r) for r in rows]


async def live_count(pool: asyncpg.Pool, job_id: UUID | None = None) -> int:
    """Clones not yet deleted (of one job, or all): what must be 0 once the jobs are over."""
    if job_id is None:
        return int(await pool.fetchval("SELECT count(*) FROM voice_clones WHERE state <> 'deleted'"))
    return int(await pool.fetchval(
        "SELECT count(*) FROM voice_clones WHERE job_id = $1 AND state <> 'deleted'", job_id))
