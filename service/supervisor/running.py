"""What the supervisor and the Dramatiq worker share: the tasks this process runs now, and a loop kept alive.

Each claimed task runs in its own asyncio task under `TaskRunner`; a finished one frees its slot (`freed`),
which wakes the loop that fills the slots. On shutdown what still runs is cancelled and its lease released,
so another process takes it at once instead of after the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable

from service.db import tasks
from service.db.tasks import ClaimedTask
from service.supervisor.runner import TaskRunner


class RunningTasks:
    def __init__(self, runner: TaskRunner) -> None:
        self.runner = runner
        self.freed = asyncio.Event()
        self._runners: dict[uuid.UUID, tuple[uuid.UUID, asyncio.Task[None]]] = {}  # task -> (job, runner)

    def __len__(self) -> int:
        return len(self._runners)

    def __contains__(self, task_id: uuid.UUID) -> bool:
        return task_id in self._runners

    def runs_job(self, job_id: uuid.UUID) -> bool:
        return any(job == job_id for job, _ in self._runners.values())

    def start(self, task: ClaimedTask, after: Callable[[ClaimedTask], Awaitable[None]] | None = None) -> None:
        """Run `task` (then `after`, once its slot is free), unless its runner is already at it: its lease ran
        out while this process waited for the database, and this claim renewed it."""
        if task.id not in self._runners:
            runner = asyncio.create_task(self._run(task, after), name=f"task-{task.id}")
            self._runners[task.id] = (task.job_id, runner)

    async def _run(self, task: ClaimedTask, after: Callable[[ClaimedTask], Awaitable[None]] | None) -> None:
        try:
            await self.runner.run(task)
        finally:
            self._runners.pop(task.id, None)
            self.freed.set()
        if after is not None:
            await after(task)

    async def finish(self, seconds: float) -> None:
        """Let the running tasks go on for up to `seconds`."""
        if self._runners:
            await asyncio.wait([runner for _, runner in self._runners.values()], timeout=seconds)

    async def hand_back(self) -> list[uuid.UUID]:
        """Cancel what still runs and release its leases; returns the tasks handed back."""
        running = list(self._runners.items())
        for _, (_, runner) in running:
            runner.cancel()
        await asyncio.gather(*(runner for _, (_, runner) in running), return_exceptions=True)
        handed_back = [task_id for task_id, _ in running]
        for task_id in handed_back:
            with contextlib.suppress(Exception):
                await tasks.release(self.runner.pool, task_id, self.runner.owner_id)
        return handed_back


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """True when `event` is set within `seconds`. Not `asyncio.wait_for`: on Python 3.11 it swallows a
    cancellation that arrives in the loop turn the event is set (it returns instead of raising), and a loop
    stopped by that cancellation, such as a worker's sweep, then goes on forever while its stop waits for it."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def keep_running(body: Callable[[], Awaitable[None]], crashed: Callable[[Exception, float], None]) -> None:
    """Run `body` until it returns; when it raises, tell `crashed` (with the delay before the restart) and run
    it again, backing off from 0.5 s to 30 s. Uvicorn would otherwise keep serving with nobody doing the work."""
    delay = 0.5
    while True:
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            crashed(exc, delay)
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
            delay = min(delay * 2, 30.0)
