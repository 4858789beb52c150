"""The `outbox` table (sql/036): webhooks and meter events waiting to go, and the record of every attempt.

Rows are written by a trigger on `task_events`, in the transaction of the change they report. Here they are
taken for delivery (a short lease in `next_attempt_at`, rows locked with SKIP LOCKED, so two processes never
send the same message at once and a process killed mid-send leaves it to be sent again), and settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

OUTBOX_CHANNEL = "outbox"


@dataclass(frozen=True)
class Message:
    id: UUID
    destination: str  # webhook | stripe
    event_type: str
    job_id: UUID
    task_id: UUID | None
    owner_id: str
    url: str | None
    payload: dict[str, Any]
    attempts: int  # this attempt's number
    created_at: datetime

    @property
    def webhook_id(self) -> str:
        """Standard Webhooks' `webhook-id`: the same for every attempt of this message."""
        return f"msg_{self.id.hex}"


async def take_due(pool: asyncpg.Pool, limit: int, lease_seconds: float) -> list[Message]:
    """Up to `limit` messages due now; each is not due again for `lease_seconds` unless settled first."""
    rows = await pool.fetch(
        """UPDATE outbox AS o SET attempts = o.attempts + 1,
                                  next_attempt_at = now() + make_interval(secs => $2)
           WHERE o.id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= now()
                          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING o.id, o.destination, o.event_type, o.job_id, o.task_id, o.owner_id, o.url, o.payload,
                     o.attempts, o.created_at""",
        limit, lease_seconds)
    return [Message(**dict(r)) for r in rows]


async def settle(pool: asyncpg.Pool, message_id: UUID, attempt: int, *, state: str, status: int | None,
                 latency_ms: float, error: str | None, excerpt: str | None, retry_in: float | None) -> None:
    """Record an attempt and the message's new state: `delivered`, `dead`, `skipped`, or `pending` again in
    `retry_in` seconds."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO outbox_attempts (outbox_id, attempt, status, latency_ms, error, response_excerpt)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            message_id, attempt, status, latency_ms, error, excerpt)
        await conn.execute(
            """UPDATE outbox SET state = $2, last_status = $3, last_error = $4,
                   delivered_at = CASE WHEN $2 = 'delivered' THEN now() END,
                   next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                          ELSE now() + make_interval(secs => $5::float8) END
               WHERE id = $1""",
            message_id, state, status, error, retry_in)


async def next_due_in(pool: asyncpg.Pool) -> float | None:
    """Seconds until the next pending message is due (0 or less: now); None when nothing is pending."""
    value = await pool.fetchval(
        "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 FROM outbox WHERE state = 'pending'")
    return None if value is None else float(value)


async def customer_of(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> str | None:
    """Who pays: the operator's mapping first, else the JWT claim recorded on the job."""
    value: str | None = await pool.fetchval(
        """SELECT coalesce((SELECT stripe_customer_id FROM billing_customers WHERE owner_id = $1),
                           (SELECT billing_customer FROM jobs WHERE id = $2))""",
        owner_id, job_id)
    return value


async def set_customer(pool: asyncpg.Pool, owner_id: str, stripe_customer_id: str) -> None:
    await pool.execute(
        """INSERT INTO billing_customers (owner_id, stripe_customer_id) VALUES ($1, $2)
           ON CONFLICT (owner_id) DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id""",
        owner_id, stripe_customer_id)


async def resend(pool: asyncpg.Pool, message_id: UUID) -> None:
    """An operator's re-send (sql/036 `ops.resend`): the same message, the same id, now."""
    await pool.execute("SELECT ops.resend($1)", message_id)


async def for_job(pool: asyncpg.Pool, job_id: UUID) -> list[dict[str, Any]]:
    """The job's messages as `ops.outbox` shows them, oldest first."""
    rows = await pool.fetch("SELECT * FROM ops.outbox WHERE job_id = $1 ORDER BY created_at, event_type", job_id)
    return [dict(r) for r in rows]
