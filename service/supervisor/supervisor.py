"""Claims language tasks from Postgres and runs their stages, within concurrency limits.

Wakes on NOTIFY (the listener's `tasks_ready`), a freed slot, or a slow poll that also picks up
tasks whose lease expired because their process died. Restarts its own loop when it crashes,
since uvicorn would otherwise keep serving with nobody doing the work. At start-up it frees the
leases of this host's earlier processes that are gone (kill -9, a crash), so their tasks resume at
once instead of after the lease runs out. On shutdown it drains: no new claims, the running stages
get `SHUTDOWN_DRAIN_SECONDS` to finish, whatever is left is handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor

import structlog

from service import metrics
from service.db import tasks
from service.db.database import Database
from service.db.listener import Listener
from service.db.tasks import ClaimedTask
from service.engines.protocols import Engines
from service.pipeline.context import StageFn
from service.settings import Settings
from service.storage import Storage
from service.supervisor import owners
from service.supervisor.runner import TaskRunner

log = structlog.get_logger(__name__)


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
        self.owner_id = owner_id or owners.new_owner_id()
        self.runner = TaskRunner(settings, db, listener, dict(registry), storage, executor, engines, self.owner_id)
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._loop_alive = False
        self.draining = False
        self.restarts = 0

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._main is not None and not self._main.done() and self._loop_alive

    async def start(self) -> None:
        with contextlib.suppress(Exception):  # a database that is down now is waited for by the loop
            freed = await owners.free_dead_local_leases(self.pool)
            if freed:
                log.info("supervisor.freed_dead_leases", owners=freed)
        self._main = asyncio.create_task(self._supervise(), name="supervisor")

    async def drain(self, seconds: float) -> None:
        """Stop claiming; let running stages finish for up to `seconds`, then hand back what is left."""
        self.draining = True
        self.runner.draining = True
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        running = list(self._running.values())
        if running:
            log.info("supervisor.draining", tasks=len(running), seconds=seconds)
            await asyncio.wait(running, timeout=seconds)
        await self.stop()

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
        while not self.draining:
            free = self.settings.max_concurrent_tasks - len(self._running)
            if free > 0:
                wanted = min(free, self.settings.claim_batch_size)
                self.listener.tasks_ready.clear()
                started = time.perf_counter()
                claimed = await tasks.claim(self.pool, self.owner_id, wanted, self.settings.lease_seconds)
                metrics.claimed(time.perf_counter() - started, len(claimed))
                for task in claimed:
                    self._start(task)
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

    def _start(self, task: ClaimedTask) -> None:
        if task.id in self._running:
            # Its lease ran out while this process was waiting for the database, and this claim renewed
            # it: the runner that has it carries on.
            return
        self._running[task.id] = asyncio.create_task(self._run(task), name=f"task-{task.id}")

    async def _run(self, task: ClaimedTask) -> None:
        try:
            await self.runner.run(task)
        finally:
            self._running.pop(task.id, None)
            self._slot_freed.set()
