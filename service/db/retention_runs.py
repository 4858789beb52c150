"""The `retention_runs` table: every retention run, and the lock that lets one process run the schedule.

The schedule runs retention only when no run started within RETENTION_INTERVAL_MINUTES, deciding under a
transaction-scoped advisory lock, so of several processes one runs and the rest see that it did.
"""

from __future__ import annotations

from typing import Any

import asyncpg

_SCHEDULE_LOCK = 0x72657465  # any constant: "rete"


async def try_schedule_lock(conn: asyncpg.Connection) -> bool:
    """Inside a transaction: True for the one caller that gets the lock until its transaction ends."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SCHEDULE_LOCK))


async def started_within(conn: asyncpg.Connection | asyncpg.Pool, minutes: float) -> bool:
    """Whether a run that has not failed started within the last `minutes`."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM retention_runs
                          WHERE started_at > now() - make_interval(secs => $1 * 60) AND error IS NULL)""",
        minutes))


async def start(conn: asyncpg.Connection | asyncpg.Pool, runner: str, trigger: str) -> int:
    return int(await conn.fetchval(
        "INSERT INTO retention_runs (runner, trigger) VALUES ($1, $2) RETURNING id", runner, trigger))


async def finish(pool: asyncpg.Pool, run_id: int, report: dict[str, Any] | None, error: str | None) -> None:
    await pool.execute("UPDATE retention_runs SET finished_at = now(), report = $2, error = $3 WHERE id = $1",
                       run_id, report, error)
