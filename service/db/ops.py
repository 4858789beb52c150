"""Reading the `ops` views (sql/011) for `/metrics`: what the database says about the whole queue.

These figures are the same whichever process asks (the dashboard takes `max` over processes).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class StageQueue:
    stage: str
    tasks: int
    claimable: int
    running: int
    waiting_to_retry: int
    oldest_claimable_age_seconds: float


@dataclass(frozen=True)
class QueueSnapshot:
    stages: list[StageQueue]
    stalled: int
    last_retention_success: float | None  # unix time of the newest retention run that finished without error


async def snapshot(pool: asyncpg.Pool) -> QueueSnapshot:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT stage, tasks, claimable, running, waiting_to_retry,
                      coalesce(oldest_claimable_age_seconds, 0) AS oldest_claimable_age_seconds
               FROM ops.queue_depth""")
        stalled = await conn.fetchval("SELECT count(*) FROM ops.stalled_tasks")
        last = await conn.fetchval(
            """SELECT extract(epoch FROM max(finished_at))::float8 FROM retention_runs
               WHERE finished_at IS NOT NULL AND error IS NULL""")
    return QueueSnapshot([StageQueue(**dict(r)) for r in rows], int(stalled), last)
