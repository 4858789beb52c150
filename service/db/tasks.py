"""The `language_tasks` table: claiming, leases, stage transitions, progress, failure.

Every change to a task is one transaction that updates the row, appends its event (and the job's
`done` event when it was the last task to finish) and NOTIFYs, so the SSE stream and the table
never disagree. Writes by a worker are guarded by its lease: a worker that lost its lease (it
stalled, or the task was cancelled) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.db.database import Database
from service.db.events import NewEvent
from service.db.transitions import Change
from service.domain import FINISHED, TERMINAL, WORK_STAGES, EventKind, Stage

TERMINAL_SQL = "(" + ", ".join(f"'{stage}'" for stage in sorted(TERMINAL)) + ")"

# A task that could be claimed right now.
RUNNABLE_SQL = f"""stage NOT IN {TERMINAL_SQL} AND run_after <= now()
    AND (lease_expires_at IS NULL OR lease_expires_at < now())"""


@dataclass(frozen=True)
class ClaimedTask:
    id: UUID
    job_id: UUID
    target_language: str
    stage: str
    attempts: int  # this attempt's number: 1, then one more after each failed stage is retried
    claims: int  # times the task was taken, interruptions (a killed process, a lost lease) included
    lease_owner: str


# What every claim (the supervisor's, or the Dramatiq worker's of the task a message names) sets in
# `language_tasks AS t`, with `$1` the new lease owner and `$2` the lease's seconds; and what it returns.
CLAIM_SET_SQL = """lease_owner = $1,
                lease_expires_at = now() + make_interval(secs => $2),
                attempts = greatest(t.attempts, 1),
                claims = t.claims + 1,
                started_at = coalesce(t.started_at, now()),
                leased_at = now(),
                heartbeat_at = now(),
                updated_at = now()"""
CLAIMED_SQL = ", ".join(f"t.{f.name}" for f in fields(ClaimedTask))


def overall_progress(stage: str, fraction: float) -> float:
    """Task progress 0..1 across all work stages, so a progress bar only moves forward."""
    if stage == Stage.COMPLETE:
        return 1.0
    if stage not in WORK_STAGES:
        return 0.0
    fraction = min(max(fraction, 0.0), 1.0)
    return round((WORK_STAGES.index(stage) + fraction) / len(WORK_STAGES), 4)


# Fair shares (sql/037): the users with live tasks, found by a loose index scan (one probe per user on
# `language_tasks_owner_live`); for each, how many tasks it runs now (`language_tasks_owner_leased`) and its
# oldest runnable tasks up to its allowance, locked with SKIP LOCKED; then the tasks whose turn comes first:
# a user's n-th task waits behind every other user's tasks with a smaller (running + n), oldest first. So a
# user with one task waiting goes before a user whose tenth task waits, and claims alternate between users.
# $1 lease owner, $2 lease seconds, $3 how many to claim, $4 the most tasks one user may run at once.
FAIR_CHOICE_SQL = f"""
    WITH RECURSIVE users AS (
        (SELECT owner_id FROM language_tasks WHERE stage NOT IN {TERMINAL_SQL} ORDER BY owner_id LIMIT 1)
        UNION ALL
        SELECT (SELECT l.owner_id FROM language_tasks l
                WHERE l.stage NOT IN {TERMINAL_SQL} AND l.owner_id > u.owner_id ORDER BY l.owner_id LIMIT 1)
        FROM users u WHERE u.owner_id IS NOT NULL
    ), load AS MATERIALIZED (
        SELECT u.owner_id,
               (SELECT count(*) FROM language_tasks r
                WHERE r.owner_id = u.owner_id AND r.lease_owner IS NOT NULL AND r.lease_expires_at >= now()
                  AND r.stage NOT IN {TERMINAL_SQL}) AS running
        FROM users u WHERE u.owner_id IS NOT NULL
    ), candidates AS (
        SELECT c.id, c.run_after, l.running,
               row_number() OVER (PARTITION BY l.owner_id ORDER BY c.run_after) AS nth
        FROM load l
        CROSS JOIN LATERAL (
            SELECT t.id, t.run_after FROM language_tasks t
            WHERE l.running < $4 AND t.owner_id = l.owner_id AND t.stage NOT IN {TERMINAL_SQL}
              AND t.run_after <= now() AND (t.lease_expires_at IS NULL OR t.lease_expires_at < now())
            ORDER BY t.run_after
            LIMIT $3
            FOR UPDATE SKIP LOCKED) c
    )
    SELECT id FROM candidates WHERE running + nth <= $4 ORDER BY running + nth, run_after LIMIT $3"""


async def claim(
    pool: asyncpg.Pool, lease_owner: str, limit: int, lease_seconds: float, per_user: int | None = None,
) -> list[ClaimedTask]:
    """Take up to `limit` runnable tasks (queued, due, not leased or their lease expired), fairly between users,
    none past `per_user` running tasks of one user (None: no cap). One statement: see FAIR_CHOICE_SQL."""
    rows = await pool.fetch(
        f"""UPDATE language_tasks AS t
            SET {CLAIM_SET_SQL}
            WHERE t.id IN ({FAIR_CHOICE_SQL})
            RETURNING {CLAIMED_SQL}""",
        lease_owner,
        lease_seconds,
        limit,
        per_user if per_user is not None else 2**31 - 1,
    )
    return [ClaimedTask(**dict(r)) for r in rows]


async def heartbeat(pool: asyncpg.Pool, task_id: UUID, lease_owner: str, lease_seconds: float) -> bool:
    """Extend the lease. False means the lease is gone (cancelled, or taken after expiry)."""
    row = await pool.fetchval(
        f"""UPDATE language_tasks
            SET lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now()
            WHERE id = $1 AND lease_owner = $2 AND stage NOT IN {TERMINAL_SQL}
            RETURNING id""",
        task_id,
        lease_owner,
        lease_seconds,
    )
    return row is not None


async def stage_of(pool: asyncpg.Pool, task_id: UUID, lease_owner: str) -> str | None:
    """The task's stage if `lease_owner` still holds it, else None."""
    stage: str | None = await pool.fetchval(
        "SELECT stage FROM language_tasks WHERE id = $1 AND lease_owner = $2", task_id, lease_owner)
    return stage


async def ending_of(pool: asyncpg.Pool, task_id: UUID) -> tuple[str | None, bool]:
    """(the task's stage, whether its whole job has ended)."""
    row = await pool.fetchrow(
        f"""SELECT t.stage, j.status IN ({", ".join(f"'{s}'" for s in sorted(FINISHED))}) AS job_over
            FROM language_tasks t JOIN jobs j ON j.id = t.job_id WHERE t.id = $1""",
        task_id,
    )
    return (None, False) if row is None else (row["stage"], bool(row["job_over"]))


async def owners_holding_leases(pool: asyncpg.Pool, prefix: str) -> list[str]:
    """Owners of live leases (of tasks and transcripts) whose id starts with `prefix` (a host's processes);
    a lease already expired is looked at no more, so a freed owner is not freed (and logged) again each sweep."""
    # Run on every sweep: both halves read only rows that can hold a lease, through partial indexes (sql/023).
    rows = await pool.fetch(
        f"""SELECT DISTINCT lease_owner FROM language_tasks
            WHERE stage NOT IN {TERMINAL_SQL} AND lease_owner LIKE $1 || '%' AND lease_expires_at >= now()
            UNION SELECT DISTINCT split_part(lease_owner, '/', 1) FROM transcripts
            WHERE state = 'running' AND lease_owner LIKE $1 || '%' AND lease_expires_at >= now()""",
        prefix,
    )
    return [r[0] for r in rows]


async def expire_leases(pool: asyncpg.Pool, owners: list[str]) -> int:
    """End the leases of processes known to be dead, so their work is claimed again now, not after expiry."""
    async with pool.acquire() as conn, conn.transaction():
        freed = await conn.fetchval(
            """WITH expired AS (
                   UPDATE language_tasks SET lease_expires_at = now() - interval '1 second'
                   WHERE lease_owner = ANY($1::text[]) RETURNING 1)
               SELECT count(*) FROM expired""",
            owners,
        )
        await conn.execute(
            """UPDATE transcripts SET lease_expires_at = now() - interval '1 second'
               WHERE state = 'running' AND split_part(lease_owner, '/', 1) = ANY($1::text[])""",
            owners,
        )
    return int(freed or 0)


async def _change(
    db: Database,
    task_id: UUID,
    lease_owner: str,
    kind: str,
    *,
    stage: str | None = None,
    progress: float | None = None,
    error: tuple[str, str] | None = None,
    release: bool = False,
    run_after_seconds: float | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """One transition (sql/004: `change_task`), group-committed with whatever other transitions
    are waiting (db/transitions.py). False when the lease is gone."""
    change = Change(task_id, lease_owner, kind, stage, progress, error[0] if error else None,
                    error[1] if error else None, release, run_after_seconds, data or {})
    return await db.transitions.apply(change) is not None


async def enter_stage(
    db: Database, task_id: UUID, lease_owner: str, stage: str, data: dict[str, Any] | None = None) -> bool:
    """Move a task into `stage` (a work stage or `complete`)."""
    return await _change(db, task_id, lease_owner, EventKind.STAGE, stage=stage, progress=overall_progress(stage, 0.0),
                         data=data)


async def advance(
    db: Database, task_id: UUID, lease_owner: str, finished_stage: str, data: dict[str, Any] | None = None,
) -> str | None:
    """Record that `finished_stage` is done (`data`: how it went, for the event) and enter the next one.
    Returns it, or None if the lease is gone."""
    stage = Stage(finished_stage).next
    return stage if await enter_stage(db, task_id, lease_owner, stage, data) else None


async def report_progress(
    db: Database, task_id: UUID, lease_owner: str, stage: str, fraction: float, **data: Any
) -> bool:
    fraction = round(min(max(fraction, 0.0), 1.0), 4)
    return await _change(db, task_id, lease_owner, EventKind.PROGRESS, progress=overall_progress(stage, fraction),
                         data={"stage_progress": fraction, **data})


async def record_artifact(
    db: Database, task_id: UUID, lease_owner: str, artifact: dict[str, Any]
) -> bool:
    """Announce an artifact on the stream (the `artifacts` row is written by its owner module)."""
    return await _change(db, task_id, lease_owner, EventKind.ARTIFACT, data={"artifact": artifact})


async def fail(
    db: Database, task_id: UUID, lease_owner: str, code: str, message: str, failed_in: str | None = None) -> bool:
    """Fail the task for good; `failed_in` (the stage it was in) goes into the event for ops.failures_24h."""
    message = message[:2000]
    where = {"failed_in": failed_in} if failed_in else {}
    return await _change(db, task_id, lease_owner, EventKind.FAILED, stage=Stage.FAILED, error=(code, message),
                         data={"error": {"code": code, "message": message}, **where})


async def retry_later(
    db: Database, task_id: UUID, lease_owner: str, delay_seconds: float, code: str, message: str
) -> bool:
    """Give the task back for a later attempt from the stage it was in."""
    return await _change(db, task_id, lease_owner, EventKind.STAGE, release=True, run_after_seconds=delay_seconds,
        data={"retrying_in_seconds": delay_seconds, "error": {"code": code, "message": message[:2000]}},
    )


async def add_usage(pool: asyncpg.Pool, task_id: UUID, usage: dict[str, float]) -> dict[str, float]:
    """Add counters to the task's usage (row-locked, so concurrent stages never lose a count)."""
    if not usage:
        return {}
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval("SELECT usage FROM language_tasks WHERE id = $1 FOR UPDATE", task_id)
        merged = dict(current or {})
        for key, amount in usage.items():
            merged[key] = round(float(merged.get(key, 0)) + float(amount), 6)
        await conn.execute("UPDATE language_tasks SET usage = $2 WHERE id = $1", task_id, merged)
        return merged


async def usage_of(pool: asyncpg.Pool, task_id: UUID) -> dict[str, float]:
    return dict(await pool.fetchval("SELECT usage FROM language_tasks WHERE id = $1", task_id) or {})


async def release(pool: asyncpg.Pool, task_id: UUID, lease_owner: str) -> None:
    """Give a task back at once (shutdown), without an event: it has not changed."""
    await pool.execute(
        "UPDATE language_tasks SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
        "WHERE id = $1 AND lease_owner = $2",
        task_id,
        lease_owner,
    )


async def insert_for_job(conn: asyncpg.Connection, job_id: UUID, languages: list[str]) -> list[NewEvent]:
    rows = await conn.fetch(
        """INSERT INTO language_tasks (job_id, target_language)
           SELECT $1, l FROM unnest($2::text[]) AS l
           RETURNING id, target_language, stage, progress""",
        job_id,
        languages,
    )
    return [
        NewEvent(
            kind=EventKind.STAGE,
            task_id=r["id"],
            target_language=r["target_language"],
            stage=r["stage"],
            progress=float(r["progress"]),
        )
        for r in rows
    ]


PUBLIC_COLUMNS = """id, target_language, stage, progress, attempts, error_code, error_message,
    started_at, finished_at, usage"""


@dataclass(frozen=True)
class TaskView:
    """One language's task as the API shows it (`Task` in routes/models.py)."""

    id: UUID
    target_language: str
    stage: str
    progress: float
    attempts: int
    error_code: str | None
    error_message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    usage: dict[str, float]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TaskView:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "target_language": self.target_language,
            "stage": self.stage,
            "progress": round(float(self.progress), 4),
            "attempts": self.attempts,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "usage": self.usage,
        }


async def for_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> list[TaskView]:
    rows = await conn.fetch(
        f"SELECT {PUBLIC_COLUMNS} FROM language_tasks WHERE job_id = $1 ORDER BY target_language", job_id
    )
    return [TaskView.from_row(r) for r in rows]
