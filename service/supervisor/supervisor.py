"""Claims language tasks from Postgres and runs their stages, within concurrency limits.

Wakes on NOTIFY (the listener's `tasks_ready`), a freed slot, or a slow poll that also picks up
tasks whose lease expired because their process died. Restarts its own loop when it crashes,
since uvicorn would otherwise keep serving with nobody doing the work. At start-up and on every poll
it frees the leases of this host's processes that are gone (kill -9, a crash), so their tasks resume
at once instead of after the lease runs out. On shutdown it drains: no new claims, the running stages
get `SHUTDOWN_DRAIN_SECONDS` to finish, whatever is left is handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import structlog

from service import metrics
from service.db import tasks
from service.stages.context import StageFn, StageServices
from service.supervisor import owners
from service.supervisor.runner import TaskRunner
from service.supervisor.running import RunningTasks, keep_running

log = structlog.get_logger(__name__)


class Supervisor:
    def __init__(self, services: StageServices, registry: Mapping[str, StageFn], owner_id: str | None = None) -> None:
        self.settings = services.settings
        self.db = services.db
        self.pool = services.db.pool
        self.listener = services.listener
        self.owner_id = owner_id or owners.new_owner_id()
        self.runner = TaskRunner(services, registry, self.owner_id)
        self._running = RunningTasks(self.runner)
        self._main: asyncio.Task[None] | None = None
        self._loop_alive = False
        self.draining = False
        self.restarts = 0

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._main is not None and not self._main.done() and self._loop_alive

    async def start(self) -> None:
        await owners.free_dead(self.pool, "supervisor.freed_dead_leases")
        self._main = asyncio.create_task(self._supervise(), name="supervisor")

    async def drain(self, seconds: float) -> None:
        """Stop claiming; let running stages finish for up to `seconds`, then hand back what is left."""
        self.draining = True
        self.runner.draining = True
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        if self._running:
            log.info("supervisor.draining", tasks=len(self._running), seconds=seconds)
        await self._running.finish(seconds)
        await self.stop()

    async def stop(self) -> None:
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        await self._running.hand_back()

    async def _supervise(self) -> None:
        try:
            await keep_running(self._claim_loop, self._crashed)
        finally:
            self._loop_alive = False

    def _crashed(self, exc: Exception, delay: float) -> None:
        self._loop_alive = False
        self.restarts += 1
        log.error("supervisor.crashed", error=repr(exc), restart_in=round(delay, 2))

    # -- claiming ---------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        self._loop_alive = True
        last_sweep = time.monotonic()
        while not self.draining:
            if time.monotonic() - last_sweep >= self.settings.poll_interval_seconds:
                last_sweep = time.monotonic()
                await owners.free_dead(self.pool, "supervisor.freed_dead_leases")
            free = self.settings.max_concurrent_tasks - len(self._running)
            if free > 0:
                wanted = min(free, self.settings.claim_batch_size)
                self.listener.tasks_ready.clear()
                started = time.perf_counter()
                claimed = await tasks.claim(self.pool, self.owner_id, wanted, self.settings.lease_seconds,
                                            self.settings.per_user_task_limit)
                metrics.claimed(time.perf_counter() - started, len(claimed))
                for task in claimed:
                    self._running.start(task)
                if len(claimed) == wanted:
                    continue  # there may be more waiting
            self._running.freed.clear()
            waits = [asyncio.ensure_future(self._running.freed.wait())]
            if free > 0:
                waits.append(asyncio.ensure_future(self.listener.tasks_ready.wait()))
            try:
                await asyncio.wait(waits, timeout=self.settings.poll_interval_seconds,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
