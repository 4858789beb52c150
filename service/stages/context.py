"""What a stage function receives, and how it reports failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import asyncpg
import structlog

from service import scratch
from service.audio.probe import sha256_of
from service.db import artifacts, tasks
from service.db.database import Database
from service.db.jobs import StoredJob
from service.db.listener import Listener
from service.db.tasks import ClaimedTask
from service.domain import ArtifactKind, InputKind
from service.engines.protocols import Engines
from service.errors import ErrorCode, LeaseLost, StageError
from service.settings import Settings
from service.stages.pace import Pace
from service.storage import Storage
from service.workpool import cpu_pool

P = ParamSpec("P")
T = TypeVar("T")
log = structlog.get_logger(__name__)

PROGRESS_EVENT_SECONDS = 1.0  # progress inside a stage: at most one event a second per task


@dataclass(frozen=True, eq=False)  # one per process: compared and hashed by identity
class StageServices:
    """What the stages, and the loop that runs them, use: built once at start-up (service/wiring)."""

    settings: Settings
    db: Database
    listener: Listener
    storage: Storage
    executor: Executor
    engines: Engines | None


@dataclass
class StageContext:
    task: ClaimedTask
    job: StoredJob
    stage: str
    services: StageServices
    # What the stage counted (segments, characters, ...): logged with its duration and kept in its event.
    figures: dict[str, Any] = field(default_factory=dict)
    # The task's pace in this process, across its stages: the time remaining its progress events carry.
    pace: Pace = field(default_factory=Pace)
    reported: float = 0.0  # the stage's progress so far: it never goes back

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def executor(self) -> Executor:
        return self.services.executor

    @property
    def engines(self) -> Engines | None:
        return self.services.engines

    @property
    def listener(self) -> Listener:
        return self.services.listener

    @property
    def engine(self) -> Engines:
        """The configured engines; a stage that needs one fails clearly when none could be loaded."""
        if self.engines is None:
            raise StageError(ErrorCode.ENGINE_MISSING, f"No engine is configured for the {self.stage} stage")
        return self.engines

    @property
    def pool(self) -> asyncpg.Pool:
        return self.db.pool

    @property
    def lease_owner(self) -> str:
        return self.task.lease_owner

    @property
    def work_dir(self) -> Path:
        """Scratch space for this task, kept across its stages and attempts."""
        path = scratch.task_dir(self.settings.scratch_dir, self.task.job_id, self.task.target_language)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.asynccontextmanager
    async def input_copy(self, kind: InputKind) -> AsyncIterator[str]:
        """A local path holding the job's `kind` input, checked against the hash recorded when the job was
        made: inputs are immutable, and a stage never works on a file nobody checked. A media job's voice and
        background are the stems its separation published (`stages/separation.py`), checked against theirs."""
        if self.job.media is not None and kind in (InputKind.VOICE, InputKind.BACKGROUND):
            async with self._stem_copy(kind) as local:
                yield local
            return
        stored = self.job.input(kind)
        async with self.storage.local_copy(stored.object_path) as local:
            if await self.in_pool(sha256_of, local) != stored.sha256:
                raise StageError(ErrorCode.INPUT_CHANGED, f"The {kind} recording changed after the job was created")
            yield local

    @contextlib.asynccontextmanager
    async def _stem_copy(self, kind: InputKind) -> AsyncIterator[str]:
        wanted = ArtifactKind.ISOLATED_VOICE if kind == InputKind.VOICE else ArtifactKind.BACKGROUND_STEM
        found = [a for a in await artifacts.job_level(self.pool, self.task.job_id) if a.kind == wanted]
        if not found:
            raise StageError(ErrorCode.TRANSCRIPT_MISSING, f"The job's {wanted} is not ready", retryable=True)
        async with self.storage.local_copy(found[0].object_path) as local:
            if await self.in_pool(sha256_of, local) != found[0].sha256:
                raise StageError(ErrorCode.INPUT_CHANGED, f"The job's {wanted} changed after separation")
            yield local

    async def in_pool(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` in the process pool; if the task is cancelled, the worker stops too."""
        return await cpu_pool.run(self.executor, fn, *args, **kwargs)

    async def record_usage(self, usage: dict[str, float]) -> None:
        """Add what this stage consumed from paid providers to the task's usage counters."""
        await tasks.add_usage(self.pool, self.task.id, usage)

    async def progress(self, fraction: float, **data: Any) -> None:
        """Report progress within the current stage (0..1, never less than reported before, with a rough time
        remaining for the task); raises LeaseLost if the task is gone."""
        fraction = self.reported = max(min(fraction, 1.0), self.reported)
        remaining = self.pace.remaining_seconds(tasks.overall_progress(self.stage, fraction))
        if remaining is not None:
            data.setdefault("remaining_seconds", remaining)
        if not await tasks.report_progress(
            self.db, self.task.id, self.lease_owner, self.stage, fraction, **data
        ):
            raise LeaseLost()

    @contextlib.asynccontextmanager
    async def reporting(self, low: float, high: float) -> AsyncIterator[Callable[[float], None]]:
        """A callback for work that tells how far it got (0..1), shown as this stage's progress from `low` to
        `high`: at most one event per PROGRESS_EVENT_SECONDS, the latest value, sent in the background."""
        latest: list[float] = []
        news = asyncio.Event()

        def on_progress(fraction: float) -> None:
            latest.append(low + (high - low) * min(max(fraction, 0.0), 1.0))
            news.set()

        async def send() -> None:
            while True:
                await news.wait()
                news.clear()
                value = latest[-1]
                latest.clear()
                if value - self.reported >= 0.01:
                    try:
                        await self.progress(value)
                    except Exception as exc:  # a lost lease stops the task through its heartbeat; an outage passes
                        log.info("stage.progress_not_sent", error=type(exc).__name__)
                await asyncio.sleep(PROGRESS_EVENT_SECONDS)

        sender = asyncio.create_task(send())
        try:
            yield on_progress
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def in_pool_reporting(self, low: float, high: float, fn: Callable[..., T], *args: Any) -> T:
        """`in_pool` for work that reports how far it got (`workpool.progress.report`), shown as this stage's
        progress from `low` to `high`."""
        async with self.reporting(low, high) as on_progress:
            return await cpu_pool.run_reporting(self.executor, on_progress, fn, *args)


StageFn = Callable[[StageContext], Awaitable[None]]


async def run_all(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
