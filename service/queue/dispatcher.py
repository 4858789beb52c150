"""Sends the Dramatiq messages: one per task of a new job, one for each task that needs another (handed
back at shutdown, released for a retry once its `run_after` comes, a lease that ran out under a dead
worker), and again for messages Redis lost.

Every send goes through `service.db.dispatches`, which picks the tasks that need a message and marks them
in the transaction that sends, so the task rows say which tasks have a message out. A send that fails
(Redis down) marks nothing: the next sweep, on any worker, sends it.
"""

from __future__ import annotations

from uuid import UUID

import structlog

from service.db import connection, dispatches
from service.db.database import Database
from service.errors import QueueUnavailable
from service.queue.redis_queue import RedisQueue
from service.settings import Settings

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


class Dispatcher:
    def __init__(self, settings: Settings, db: Database, queue: RedisQueue) -> None:
        self.pool = db.pool
        self.queue = queue
        # A message out this long, not claimed, with nothing waiting in the queue, went missing.
        self.lost_after_seconds = 2 * settings.lease_seconds

    async def job_created(self, job_id: UUID) -> None:
        """After the job's transaction committed. Never fails the request: the sweep sends what this could not."""
        try:
            await dispatches.dispatch_job(self.pool, job_id, self.queue.send)
        except QueueUnavailable as exc:
            log.warning("queue.enqueue_failed", job_id=str(job_id), error=exc.message)
        except Exception as exc:  # the job exists: answering 500 now would only make the client make another
            if connection.is_outage(exc):
                log.warning("queue.enqueue_failed", job_id=str(job_id), error=type(exc).__name__)
            else:
                log.exception("queue.enqueue_failed", job_id=str(job_id))

    async def tasks(self, task_ids: list[UUID]) -> list[UUID]:
        """Messages for these tasks, if they are runnable now and have none."""
        return await dispatches.dispatch_tasks(self.pool, task_ids, self.queue.send)

    async def sweep(self) -> int:
        """Messages for every task that needs one; returns how many were sent."""
        server, waiting = await self.queue.status()
        sent = 0
        while True:
            batch = await dispatches.dispatch_due(self.pool, server, self.lost_after_seconds, waiting == 0 and not sent,
                                                  SWEEP_BATCH, self.queue.send)
            sent += len(batch)
            if len(batch) < SWEEP_BATCH:
                if sent:
                    log.info("queue.swept", sent=sent)
                return sent

    async def next_release_in(self) -> float | None:
        return await dispatches.next_release_in(self.pool)
