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

from service import scratch
from service.audio.probe import sha256_of
from service.db import tasks
from service.db.database import Database
from service.db.jobs import StoredJob
from service.db.listener import Listener
from service.db.tasks import ClaimedTask
from service.domain import InputKind
from service.engines.protocols import Engines
from service.errors import ErrorCode, LeaseLost, StageError
from service.settings import Settings
from service.storage import Storage
from service.workpool import cpu_pool

P = ParamSpec("P")
T = TypeVar("T")


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
        made: inputs are immutable, and a stage never works on a file nobody checked."""
        stored = self.job.input(kind)
        async with self.storage.local_copy(stored.object_path) as local:
            if await self.in_pool(sha256_of, local) != stored.sha256:
                raise StageError(ErrorCode.INPUT_CHANGED, f"The {kind} recording changed after the job was created")
            yield local

    async def in_pool(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` in the process pool; if the task is cancelled, the worker stops too."""
        return await cpu_pool.run(self.executor, fn, *args, **kwargs)

    async def record_usage(self, usage: dict[str, float]) -> None:
        """Add what this stage consumed from paid providers to the task's usage counters."""
        await tasks.add_usage(self.pool, self.task.id, usage)

    async def progress(self, fraction: float, **data: Any) -> None:
        """Report progress within the current stage (0..1); raises LeaseLost if the task is gone."""
        if not await tasks.report_progress(
            self.db, self.task.id, self.lease_owner, self.stage, fraction, **data
        ):
            raise LeaseLost()


StageFn = Callable[[StageContext], Awaitable[None]]


async def run_all(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
