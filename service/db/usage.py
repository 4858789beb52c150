"""What a user used, for QUOTA_MINUTES_PER_DAY and `GET /v1/usage`: minutes of source audio times languages.

A language counts from the moment its job is made (the quota is checked then), unless it was cancelled before
it ever started. Days and months are UTC. Both read through `jobs_owner_newest` (owner, created_at) and the
tasks by job: the caller's own rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from service.errors import QuotaExceeded

# Transaction-scoped advisory locks on a user's quota: two jobs made at once are counted one after the other.
_QUOTA_LOCK_SPACE = 0x71756F


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def seconds_to_next_day(now: datetime) -> int:
    return max(1, int((day_start(now) + timedelta(days=1) - now.astimezone(UTC)).total_seconds()) + 1)


@dataclass(frozen=True)
class Used:
    minutes: float  # requested: source minutes times languages (what the quota counts)
    dubbed_minutes: float  # of languages that completed
    languages: int
    jobs: int


async def used_since(conn: asyncpg.Connection | asyncpg.Pool, owner_id: str, since: datetime) -> Used:
    row = await conn.fetchrow(
        """SELECT coalesce(sum(j.voice_duration_seconds * t.counted), 0)::float8 / 60 AS minutes,
                  coalesce(sum(j.voice_duration_seconds * t.completed), 0)::float8 / 60 AS dubbed_minutes,
                  coalesce(sum(t.counted), 0)::int AS languages, count(*)::int AS jobs
           FROM jobs j
           CROSS JOIN LATERAL (
               SELECT count(*) FILTER (WHERE NOT (stage = 'cancelled' AND started_at IS NULL)) AS counted,
                      count(*) FILTER (WHERE stage = 'complete') AS completed
               FROM language_tasks WHERE job_id = j.id) t
           WHERE j.owner_id = $1 AND j.created_at >= $2""",
        owner_id, since)
    assert row is not None
    return Used(round(row["minutes"], 4), round(row["dubbed_minutes"], 4), row["languages"], row["jobs"])


async def check_quota(conn: asyncpg.Connection, owner_id: str, requested_minutes: float, quota_minutes: float) -> None:
    """Inside the transaction that makes the job: QuotaExceeded (rolling it back) when it does not fit today."""
    if quota_minutes <= 0:
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _QUOTA_LOCK_SPACE, owner_id)
    now = await conn.fetchval("SELECT now()")
    used = await used_since(conn, owner_id, day_start(now))
    if used.minutes + requested_minutes > quota_minutes + 1e-9:
        raise QuotaExceeded(used.minutes, requested_minutes, quota_minutes, seconds_to_next_day(now))
