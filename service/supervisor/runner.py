"""Running one claimed task: its stages in order, under its lease, until it completes, fails or is handed back.

What counts against a task is its own failure (a stage that raises): a retry spends an attempt. A database
that goes away is not the task's fault: the runner waits for it to come back (with backoff; `/readyz`
says 503 meanwhile), checks it still holds the lease, and goes on from the stage the database says the
task is in, without spending an attempt. A task whose process keeps dying under it (claimed again and
again without finishing) is failed after `max_attempts + INTERRUPTIONS_ALLOWED` claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TypeVar

import anyio
import structlog

from service import metrics, scratch
from service.db import connection, jobs, tasks, translations
from service.db.tasks import ClaimedTask
from service.domain import WORK_STAGES, Stage
from service.engines.protocols import engine_name
from service.errors import DubbingError, ErrorCode, LeaseLost, without_paths
from service.stages.context import StageContext, StageFn, StageServices
from service.stages.pace import Pace
from service.supervisor import stage_report

log = structlog.get_logger(__name__)

T = TypeVar("T")
INTERRUPTIONS_ALLOWED = 5
OUTAGES_PER_STAGE = 20


class TaskRunner:
    def __init__(self, services: StageServices, registry: Mapping[str, StageFn], owner_id: str) -> None:
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.pool = services.db.pool
        self.listener = services.listener
        self.engines = services.engines
        self.registry = dict(registry)
        self.owner_id = owner_id
        self.stage_limits = {name: asyncio.Semaphore(self.settings.stage_concurrency) for name in registry}
        self.draining = False
        self._lost: set[object] = set()
        # (job id, task id) -> "heartbeat now", for the tasks running here
        self._check_now: dict[tuple[str, str], asyncio.Event] = {}
        self.listener.cancelled_watchers.append(self._check_leases)

    async def run(self, task: ClaimedTask) -> None:
        # Every line logged for the task (its heartbeat's too) carries these; `_enter` adds the stage and engine.
        with structlog.contextvars.bound_contextvars(
                job_id=str(task.job_id), task_id=str(task.id), target_language=task.target_language,
                attempt=task.attempts, stage=task.stage,
                engine=engine_name(self.engines, task.stage)):
            await self._run_under_lease(task)

    async def _run_under_lease(self, task: ClaimedTask) -> None:
        runner = asyncio.current_task()
        assert runner is not None
        key = (str(task.job_id), str(task.id))
        check_now = self._check_now[key] = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(task, runner, check_now))
        try:
            await self._run_stages(task)
        except asyncio.CancelledError:
            if task.id not in self._lost:
                raise  # shutting down or cancelled: the supervisor releases the lease
            log.info("task.lease_lost")
        except LeaseLost:
            log.info("task.lease_lost")
        except Exception as exc:
            # A failure outside any stage that is not the database's: the lease runs out and the task is
            # claimed again (here or elsewhere) from its first unfinished stage.
            log.warning("task.interrupted", error=repr(exc))
        finally:
            heartbeat.cancel()
            self._lost.discard(task.id)
            self._check_now.pop(key, None)
        await self._clean_up_if_over(task)

    def _check_leases(self, job_id: str | None, task_ids: set[str] | None) -> None:
        """Tasks were cancelled (see `Listener.cancelled_watchers`): those running here check their lease now."""
        for (job, task), check_now in self._check_now.items():
            if (job_id is None or job == job_id) and (task_ids is None or task in task_ids):
                check_now.set()

    async def _heartbeat(self, task: ClaimedTask, runner: asyncio.Task[None], check_now: asyncio.Event) -> None:
        """Extend the lease every third of it, or at once when told the task may have been cancelled; when the
        lease is gone (cancelled, or taken by another process after it ran out) the task's runner is stopped."""
        interval = self.settings.lease_seconds / 3
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it may swallow the cancel that ends this
                async with asyncio.timeout(interval):
                    await check_now.wait()
            check_now.clear()
            try:
                alive = await tasks.heartbeat(self.pool, task.id, self.owner_id, self.settings.lease_seconds)
            except Exception as exc:  # a database blip: keep the lease clock, try again
                log.warning("supervisor.heartbeat_failed", error=str(exc))
                continue
            if not alive:
                self._lost.add(task.id)
                runner.cancel()
                return

    # -- the database -----------------------------------------------------------------------------
    async def _database(self, task: ClaimedTask, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, waiting out database outages; LeaseLost if the task went elsewhere meanwhile."""
        while True:
            try:
                return await call()
            except Exception as exc:
                if not connection.is_outage(exc):
                    raise
                await self._wait_for_database(task, exc)

    async def _wait_for_database(self, task: ClaimedTask, exc: BaseException) -> None:
        log.warning("task.database_unavailable", error=type(exc).__name__)
        await connection.wait_until_available(self.pool)
        if not await tasks.heartbeat(self.pool, task.id, self.owner_id, self.settings.lease_seconds):
            raise LeaseLost()
        log.info("task.database_back")

    async def _current_stage(self, task: ClaimedTask) -> Stage:
        stage = await self._database(task, lambda: tasks.stage_of(self.pool, task.id, self.owner_id))
        if stage is None:
            raise LeaseLost()
        return Stage(stage)

    # -- stages -----------------------------------------------------------------------------------
    def _enter(self, stage: str | None) -> str:
        """Bind the stage and its engine to every log line from here on; returns the engine."""
        engine = engine_name(self.engines, stage) if stage else "none"
        structlog.contextvars.bind_contextvars(stage=str(stage) if stage else None, engine=engine)
        return engine

    async def _fail(self, task: ClaimedTask, code: str, message: str, stage: str | None = None) -> None:
        if await self._database(task, lambda: tasks.fail(self.db, task.id, self.owner_id, code, message, stage)):
            metrics.task_finished("failed", code)

    async def _run_stages(self, task: ClaimedTask) -> None:
        db, owner = self.db, self.owner_id
        if task.claims > self.settings.max_attempts + INTERRUPTIONS_ALLOWED:
            await self._fail(task, ErrorCode.TOO_MANY_INTERRUPTIONS,
                             f"The task was interrupted {task.claims - 1} times before it could finish", task.stage)
            return
        if task.attempts > self.settings.max_attempts:
            await self._fail(task, ErrorCode.TOO_MANY_ATTEMPTS, f"Gave up after {task.attempts - 1} attempts",
                             task.stage)
            return
        job = await self._database(task, lambda: jobs.by_id(self.pool, task.job_id))
        assert job is not None
        stage: Stage | None = Stage(task.stage)
        if stage is Stage.QUEUED:
            first = WORK_STAGES[0]
            entered = await self._database(task, lambda: tasks.enter_stage(db, task.id, owner, first))
            stage = first if entered else None
        self._enter(stage)
        log.info("task.started", stage=stage, attempt=task.attempts, claims=task.claims)
        pace = Pace(tasks.overall_progress(stage, 0.0) if stage else 0.0)
        outages = 0  # in a row, in one stage: past a handful with the database up, it is a bug, not an outage
        while stage is not None and not stage.is_terminal:
            engine = self._enter(stage)
            if self.draining:  # shutting down: hand the task back before its next stage
                await tasks.release(self.pool, task.id, owner)
                log.info("task.handed_back", stage=stage)
                return
            stage_fn = self.registry.get(stage)
            if stage_fn is None:
                await self._fail(task, ErrorCode.STAGE_UNAVAILABLE, f"No engine is configured for the {stage} stage",
                                 stage)
                return
            context = StageContext(task, job, stage, self.services, pace=pace)
            try:
                async with self.stage_limits[stage]:
                    started = time.perf_counter()
                    await stage_fn(context)
                    seconds = time.perf_counter() - started
            except DubbingError as exc:
                await self._stage_failed(task, stage, exc.code, exc.message, exc.retryable)
                return
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                if connection.is_outage(exc) and outages < OUTAGES_PER_STAGE:
                    outages += 1
                    await self._wait_for_database(task, exc)
                    stage = await self._current_stage(task)  # the stage's own work is redone or reused
                    continue
                log.exception("task.stage_crashed", stage=stage)
                await self._stage_failed(task, stage, ErrorCode.INTERNAL_ERROR,
                                         f"The {stage} stage crashed: {type(exc).__name__}", True)
                return
            outages = 0
            report = stage_report.finished(stage, engine, seconds, context.figures, job)
            advanced = await self._database(task, partial(self._advance, task, stage, report))
            stage = Stage(advanced) if advanced else None
        self._enter(stage)
        if stage is Stage.COMPLETE:
            metrics.task_finished("complete")
        log.info("task.finished", stage=stage)

    async def _advance(self, task: ClaimedTask, finished: Stage, report: dict[str, object]) -> str | None:
        # After an outage the transition may have committed already: go on from where the table says.
        current = await tasks.stage_of(self.pool, task.id, self.owner_id)
        if current is None:
            return None
        if current != finished:
            return current
        return await tasks.advance(self.db, task.id, self.owner_id, finished, report)

    async def _stage_failed(self, task: ClaimedTask, stage: str, code: str, detail: str, retryable: bool) -> None:
        log.warning("task.stage_failed", stage=stage, code=code, error=detail, retryable=retryable)
        message = without_paths(detail)  # what the user sees: the object, never where it lies
        if retryable and task.attempts < self.settings.max_attempts:
            delay = self.settings.retry_base_seconds * 2 ** (task.attempts - 1)
            delay = round(min(delay, 600.0) * random.uniform(0.9, 1.1), 3)
            if await self._database(task, lambda: tasks.retry_later(self.db, task.id, self.owner_id, delay, code,
                                                                    message)):
                metrics.task_retried(stage, code)
        else:
            await self._fail(task, code, message, stage)

    async def _clean_up_if_over(self, task: ClaimedTask) -> None:
        """A task that failed or was cancelled needs no scratch, a job that ended with nothing complete none of its
        own either; a complete language keeps its clips for a re-render (`scratch.keep_checkpoints`)."""
        try:
            stage, job_over = await tasks.ending_of(self.pool, task.id)
        except Exception:
            return  # retention cleans up later
        root = self.settings.scratch_dir
        folder = scratch.task_dir(root, task.job_id, task.target_language)
        if stage == Stage.COMPLETE:  # kept for a re-render after an edit, without what storage now holds
            await anyio.to_thread.run_sync(scratch.keep_checkpoints, folder)
        elif stage is not None and Stage(stage).is_terminal:
            await anyio.to_thread.run_sync(scratch.remove, folder)
        try:
            keep = await translations.keeps_scratch(self.pool, task.job_id) if job_over else True
        except Exception:
            return
        if not keep:
            await anyio.to_thread.run_sync(scratch.remove, scratch.job_dir(root, task.job_id))
