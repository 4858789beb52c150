"""Claims language tasks from Postgres and runs their stages, within concurrency limits.

Wakes on NOTIFY (the listener's `tasks_ready`), a freed slot, or a slow poll that also picks up
tasks whose lease expired because their process died. Restarts its own loop when it crashes,
since uvicorn would otherwise keep serving with nobody doing the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor

import structlog

from service.db import jobs, tasks
from service.db.database import Database
from service.db.listener import Listener
from service.db.tasks import ClaimedTask
from service.domain import WORK_STAGES, Stage
from service.engines.protocols import Engines
from service.errors import DubbingError, LeaseLost
from service.pipeline.context import StageContext, StageFn
from service.settings import Settings
from service.storage import Storage

log = structlog.get_logger(__name__)


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        listener: Listener,
        registry: Mapping[str, StageFn],
        storage: Storage,
        executor: Executor,
        engines: Engines | None = None,
        owner_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.pool = db.pool
        self.listener = listener
        self.registry = dict(registry)
        self.storage = storage
        self.executor = executor
        self.engines = engines
        self.owner_id = owner_id or new_owner_id()
        self.stage_limits = {name: asyncio.Semaphore(settings.stage_concurrency) for name in self.registry}
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._lost: set[uuid.UUID] = set()
        self._slot_freed = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._loop_alive = False
        self.restarts = 0

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._main is not None and not self._main.done() and self._loop_alive

    async def start(self) -> None:
        self._main = asyncio.create_task(self._supervise(), name="supervisor")

    async def stop(self) -> None:
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        running = list(self._running.items())
        for _, runner in running:
            runner.cancel()
        await asyncio.gather(*(r for _, r in running), return_exceptions=True)
        for task_id, _ in running:
            with contextlib.suppress(Exception):
                await tasks.release(self.pool, task_id, self.owner_id)

    async def _supervise(self) -> None:
        delay = 0.5
        while True:
            try:
                self._loop_alive = True
                await self._claim_loop()
            except asyncio.CancelledError:
                self._loop_alive = False
                raise
            except Exception as exc:
                self._loop_alive = False
                self.restarts += 1
                log.error("supervisor.crashed", error=repr(exc), restart_in=round(delay, 2))
                await asyncio.sleep(delay * random.uniform(0.9, 1.1))
                delay = min(delay * 2, 30.0)

    # -- claiming ---------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while True:
            free = self.settings.max_concurrent_tasks - len(self._running)
            if free > 0:
                wanted = min(free, self.settings.claim_batch_size)
                self.listener.tasks_ready.clear()
                claimed = await tasks.claim(self.pool, self.owner_id, wanted, self.settings.lease_seconds)
                for task in claimed:
                    self._running[task.id] = asyncio.create_task(self._run_task(task), name=f"task-{task.id}")
                if len(claimed) == wanted:
                    continue  # there may be more waiting
            self._slot_freed.clear()
            waits = [asyncio.ensure_future(self._slot_freed.wait())]
            if free > 0:
                waits.append(asyncio.ensure_future(self.listener.tasks_ready.wait()))
            try:
                await asyncio.wait(waits, timeout=self.settings.poll_interval_seconds,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    # -- running one task -------------------------------------------------------------------------
    async def _heartbeat(self, task: ClaimedTask, runner: asyncio.Task[None]) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await tasks.heartbeat(self.pool, task.id, self.owner_id, self.settings.lease_seconds)
            except Exception as exc:  # a database blip: keep the lease clock, try again
                log.warning("supervisor.heartbeat_failed", task_id=str(task.id), error=str(exc))
                continue
            if not alive:
                self._lost.add(task.id)
                runner.cancel()
                return

    async def _run_task(self, task: ClaimedTask) -> None:
        bound = structlog.contextvars.bound_contextvars(
            job_id=str(task.job_id), task_id=str(task.id), target_language=task.target_language
        )
        runner = asyncio.current_task()
        assert runner is not None
        heartbeat = asyncio.create_task(self._heartbeat(task, runner))
        try:
            with bound:
                await self._run_stages(task)
        except asyncio.CancelledError:
            if task.id not in self._lost:
                raise  # shutting down: stop() releases the lease
            log.info("task.lease_lost")
        except LeaseLost:
            log.info("task.lease_lost")
        except Exception as exc:
            # Most likely the database went away mid-transition. The lease runs out and the task is
            # claimed again (here or elsewhere) from its first unfinished stage.
            log.warning("task.interrupted", error=repr(exc))
        finally:
            heartbeat.cancel()
            self._lost.discard(task.id)
            self._running.pop(task.id, None)
            self._slot_freed.set()

    async def _run_stages(self, task: ClaimedTask) -> None:
        db, pool, owner = self.db, self.pool, self.owner_id
        if task.attempts > self.settings.max_attempts:
            await tasks.fail(db, task.id, owner, "too_many_attempts",
                             f"Gave up after {task.attempts - 1} attempts")
            return
        job = await jobs.fetch_row(pool, task.job_id)
        assert job is not None
        stage: Stage | None = Stage(task.stage)
        if stage is Stage.QUEUED:
            first = WORK_STAGES[0]
            stage = first if await tasks.enter_stage(db, task.id, owner, first) else None
        log.info("task.started", stage=stage, attempt=task.attempts)
        while stage is not None and not stage.is_terminal:
            stage_fn = self.registry.get(stage)
            if stage_fn is None:
                await tasks.fail(db, task.id, owner, "stage_unavailable",
                                 f"No engine is configured for the {stage} stage")
                return
            context = StageContext(task, job, stage, self.settings, db, self.storage, self.executor,
                                   self.engines, self.listener)
            try:
                async with self.stage_limits[stage]:
                    await stage_fn(context)
            except DubbingError as exc:
                await self._stage_failed(task, stage, exc.code, exc.message, exc.retryable)
                return
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                log.exception("task.stage_crashed", stage=stage)
                await self._stage_failed(task, stage, "internal_error",
                                         f"The {stage} stage crashed: {type(exc).__name__}", True)
                return
            stage = Stage(advanced) if (advanced := await tasks.advance(db, task.id, owner, stage)) else None
        log.info("task.finished", stage=stage)

    async def _stage_failed(self, task: ClaimedTask, stage: str, code: str, message: str, retryable: bool) -> None:
        log.warning("task.stage_failed", stage=stage, code=code, error=message, retryable=retryable)
        if retryable and task.attempts < self.settings.max_attempts:
            delay = self.settings.retry_base_seconds * 2 ** (task.attempts - 1)
            delay = min(delay, 600.0) * random.uniform(0.9, 1.1)
            await tasks.retry_later(self.db, task.id, self.owner_id, round(delay, 3), code, message)
        else:
            await tasks.fail(self.db, task.id, self.owner_id, code, message)
