"""What a stage function receives, and how it reports failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from service import tasks
from service.engines.types import EngineError
from service.listener import Listener
from service.settings import Settings
from service.storage import Storage
from service.tasks import ClaimedTask


class StageError(Exception):
    """A stage failed for a reason worth telling the user. `retryable` asks for a later attempt."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


# Engine failures worth another attempt later; the rest are the input's or the set-up's fault.
RETRYABLE_ENGINE_CODES = frozenset({"engine_timeout", "provider_unavailable"})


def engine_failure(exc: EngineError) -> StageError:
    return StageError(exc.code, exc.message, retryable=exc.code in RETRYABLE_ENGINE_CODES)


class LeaseLost(Exception):
    """The task was cancelled or taken over; stop without writing anything more."""


@dataclass
class StageContext:
    task: ClaimedTask
    job: asyncpg.Record
    stage: str
    settings: Settings
    pool: asyncpg.Pool
    storage: Storage
    executor: Executor
    engines: Any
    listener: Listener | None

    @property
    def lease_owner(self) -> str:
        return self.task.lease_owner

    @property
    def work_dir(self) -> Path:
        """Scratch space for this task, kept across its stages and attempts."""
        path = self.settings.scratch_dir / str(self.task.job_id) / self.task.target_language
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def record_usage(self, usage: dict[str, float]) -> None:
        """Add what this stage consumed from paid providers to the task's usage counters."""
        await tasks.add_usage(self.pool, self.task.id, usage)

    async def progress(self, fraction: float, **data: Any) -> None:
        """Report progress within the current stage (0..1); raises LeaseLost if the task is gone."""
        if not await tasks.report_progress(
            self.pool, self.task.id, self.lease_owner, self.stage, fraction, **data
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
