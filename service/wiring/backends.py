"""QUEUE_BACKEND: what a new job sets in motion, and what runs the stages of this process.

`postgres` (default): creating a job NOTIFYs in its transaction and the in-process `Supervisor` claims
with SKIP LOCKED. `dramatiq`: after the job commits its tasks are sent as Dramatiq messages on Redis, and
`DramatiqWorker` runs what they name. Either way the task rows, leases, stage transitions, events and
NOTIFYs for the progress streams are the same writes by the same `TaskRunner`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from uuid import UUID

from service.db.database import Database
from service.queue.dispatcher import Dispatcher
from service.queue.redis_queue import RedisQueue
from service.settings import Settings
from service.stages.context import StageFn, StageServices
from service.supervisor import owners
from service.supervisor.dramatiq_worker import DramatiqWorker
from service.supervisor.runner import TaskRunner
from service.supervisor.supervisor import Supervisor


class NotifyOnly:
    """QUEUE_BACKEND=postgres: the job's transaction has already woken the supervisors (NOTIFY tasks_ready)."""

    async def job_created(self, job_id: UUID) -> None:
        return None


@contextlib.asynccontextmanager
async def open_dispatch(settings: Settings, db: Database) -> AsyncIterator[NotifyOnly | Dispatcher]:
    """What `POST /v1/jobs` calls once the job is committed: `job_created(job_id)`."""
    if settings.queue_backend != "dramatiq":
        yield NotifyOnly()
        return
    queue = RedisQueue(settings.redis_url, settings.redis_namespace)
    try:
        yield Dispatcher(settings, db, queue)
    finally:
        queue.close()


def stage_runner(services: StageServices, registry: Mapping[str, StageFn],
                 dispatch: NotifyOnly | Dispatcher) -> Supervisor | DramatiqWorker:
    """The loop that runs stages in this process: same interface (start, drain, stop, running)."""
    if isinstance(dispatch, Dispatcher):
        return DramatiqWorker(TaskRunner(services, registry, owners.new_owner_id()), dispatch)
    return Supervisor(services, registry)
