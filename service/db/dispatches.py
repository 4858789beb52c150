"""`language_tasks` as the Dramatiq backend sees it: claiming the one task a message names, and which tasks
still need a message (sql/020: `dispatched_at`, `dispatched_to`).

A message only says "task X may be runnable": the row decides. Claiming clears `dispatched_at`, so a task
that is runnable, unleased (or whose lease ran out) and has no `dispatched_at` needs a message, whatever
happened to the last one. Marking a task dispatched happens in the same transaction that selects it (rows
locked, SKIP LOCKED), around the send itself: two dispatchers never send the same task, and a send that
fails marks nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg

from service.db.tasks import CLAIM_SET_SQL, CLAIMED_SQL, FAIR_CHOICE_SQL, RUNNABLE_SQL, TERMINAL_SQL, ClaimedTask

Send = Callable[[list[tuple[UUID, UUID]]], Awaitable[str | None]]


async def claim(pool: asyncpg.Pool, task_id: UUID, lease_owner: str, lease_seconds: float,
                per_user: int | None = None) -> ClaimedTask | None:
    """Take a task for the message that named `task_id`: the task the fair-share choice picks (sql/037, the
    supervisor's FAIR_CHOICE_SQL with one slot), which is the named one unless another user's turn comes first.
    The message is a token: when another task Y is taken, the named task X inherits Y's outstanding message
    (its `dispatched_at`, `dispatched_to`), so every message on Redis still belongs to one waiting task and
    Redis's first-in-first-out order no longer decides who runs. When nothing may run (every user with work is at
    MAX_TASKS_PER_USER), X gives its spent message up and the sweep sends it another. None: nothing taken."""
    # The message can arrive before the transaction that sent it has committed (dispatched_at is set after the
    # send): wait for that lock first, or the choice below would skip X as locked and take nothing.
    await pool.execute("SELECT 1 FROM language_tasks WHERE id = $1 FOR SHARE", task_id)
    row = await pool.fetchrow(
        f"""WITH chosen AS ({FAIR_CHOICE_SQL}),
                 token AS (SELECT c.id, l.dispatched_at, l.dispatched_to
                           FROM chosen c JOIN language_tasks l ON l.id = c.id),
                 passed AS (
                     UPDATE language_tasks x
                     SET dispatched_at = (SELECT dispatched_at FROM token),
                         dispatched_to = (SELECT dispatched_to FROM token)
                     WHERE x.id = $5 AND NOT EXISTS (SELECT 1 FROM chosen WHERE id = $5)
                     RETURNING x.id),
                 claimed AS (
                     UPDATE language_tasks AS t
                     SET {CLAIM_SET_SQL},
                         dispatched_at = NULL, dispatched_to = NULL
                     WHERE t.id IN (SELECT id FROM chosen)
                     RETURNING {CLAIMED_SQL})
            SELECT * FROM claimed""",
        lease_owner,
        lease_seconds,
        1,
        per_user if per_user is not None else 2**31 - 1,
        task_id,
    )
    return None if row is None else ClaimedTask(**dict(row))


async def _dispatch(pool: asyncpg.Pool, select_sql: str, args: tuple[object, ...], send: Send) -> list[UUID]:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(select_sql, *args)
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        server = await send([(r["id"], r["job_id"]) for r in rows])
        await conn.execute(
            "UPDATE language_tasks SET dispatched_at = now(), dispatched_to = $2 WHERE id = ANY($1::uuid[])",
            ids, server)
        return ids


async def dispatch_job(pool: asyncpg.Pool, job_id: UUID, send: Send) -> list[UUID]:
    """Send a message for each of a new job's tasks that has none yet."""
    return await _dispatch(pool, f"""SELECT id, job_id FROM language_tasks
        WHERE job_id = $1 AND dispatched_at IS NULL AND {RUNNABLE_SQL}
        FOR UPDATE SKIP LOCKED""", (job_id,), send)


async def dispatch_tasks(pool: asyncpg.Pool, task_ids: list[UUID], send: Send) -> list[UUID]:
    """Send a message for each of these tasks that is runnable and has none (handed back, released)."""
    return await _dispatch(pool, f"""SELECT id, job_id FROM language_tasks
        WHERE id = ANY($1::uuid[]) AND dispatched_at IS NULL AND {RUNNABLE_SQL}
        FOR UPDATE SKIP LOCKED""", (task_ids,), send)


async def dispatch_due(pool: asyncpg.Pool, server: str | None, lost_after_seconds: float, queue_empty: bool,
                       limit: int, send: Send) -> list[UUID]:
    """The sweep: runnable tasks with no message; claimed since their last message (by any claimer) and
    their lease ran out; with a message sent to a Redis that has restarted since (`server` is its run_id
    now); or, when nothing waits in the queue, with a message sent more than `lost_after_seconds` ago that
    no worker has claimed (lost with a worker that died holding it)."""
    return await _dispatch(pool, f"""SELECT id, job_id FROM language_tasks
        WHERE {RUNNABLE_SQL}
          AND (dispatched_at IS NULL
               OR lease_expires_at > dispatched_at
               OR ($1::text IS NOT NULL AND dispatched_to IS DISTINCT FROM $1::text)
               OR ($3 AND dispatched_at < now() - make_interval(secs => $2)))
        ORDER BY run_after
        LIMIT $4
        FOR UPDATE SKIP LOCKED""", (server, lost_after_seconds, queue_empty, limit), send)


async def needs_message_in(pool: asyncpg.Pool, task_id: UUID) -> float | None:
    """Seconds until a task that has just left a worker needs a message (0 or less: now), None if it needs
    none (it ended, someone holds it, or one was sent)."""
    value = await pool.fetchval(
        f"""SELECT extract(epoch FROM run_after - now())::float8 FROM language_tasks
            WHERE id = $1 AND stage NOT IN {TERMINAL_SQL} AND dispatched_at IS NULL
              AND (lease_expires_at IS NULL OR lease_expires_at < now())""",
        task_id,
    )
    return None if value is None else float(value)


async def next_release_in(pool: asyncpg.Pool) -> float | None:
    """Seconds until the earliest retry that waits for its `run_after` (None: none waits)."""
    value = await pool.fetchval(
        f"""SELECT extract(epoch FROM min(run_after) - now())::float8 FROM language_tasks
            WHERE stage NOT IN {TERMINAL_SQL} AND run_after > now() AND lease_owner IS NULL
              AND dispatched_at IS NULL"""
    )
    return None if value is None else float(value)
