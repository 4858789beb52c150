"""Stage runners as separate processes would run them, in this process: each its own pool and listener, on real
PostgreSQL (and a real Redis for QUEUE_BACKEND=dramatiq), running stage functions the test defines.

Shared by tests/supervisor/ and tests/queue/: make jobs as `POST /v1/jobs` does, start supervisors or workers,
and wait for a job's `done` event the way the SSE stream reads it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg

from service.db import connection, events, jobs
from service.db.database import Database
from service.db.events import Event
from service.db.jobs import InputObject, NewJob
from service.db.listener import Listener
from service.domain import WORK_STAGES
from service.queue.dispatcher import Dispatcher
from service.settings import Settings
from service.stages.context import StageContext, StageFn, StageServices
from service.storage.local import LocalStorage
from service.supervisor.dramatiq_worker import DramatiqWorker
from service.supervisor.supervisor import Supervisor
from service.wiring import backends

SHA = "0" * 64
Calls = list[tuple[uuid.UUID, str, str]]  # (task id, stage, lease owner) of every stage function call
Runner = Supervisor | DramatiqWorker


async def new_job(pool: asyncpg.Pool, targets: list[str], owner: str = "u1") -> uuid.UUID:
    """A committed job with one task per target language, made from a (never read) 1 s voice upload."""
    voice = InputObject(f"{owner}/uploads/x/voice.wav", "audio/wav", 100, SHA, 1.0)
    job_id, _ = await jobs.create(pool, NewJob(owner, "en", targets, voice, None, None, uuid.uuid4().hex))
    return job_id


async def wait_done(listener: Listener, pool: asyncpg.Pool, job_id: uuid.UUID, timeout: float = 30) -> list[Event]:
    """Every event of the job up to `done`, read the way the SSE stream reads them."""
    sub = listener.subscribe(str(job_id))
    seen: list[Event] = []

    async def collect() -> None:
        pending = await events.since(pool, job_id, 0)
        while True:
            for event in pending:
                if seen and event.seq <= seen[-1].seq:
                    continue
                seen.append(event)
                if event.kind == "done":
                    return
            item = await sub.queue.get()
            last = seen[-1].seq if seen else 0
            in_order = isinstance(item, Event) and item.seq <= last + 1
            pending = [item] if isinstance(item, Event) and in_order else await events.since(pool, job_id, last)

    try:
        await asyncio.wait_for(collect(), timeout)
    finally:
        listener.unsubscribe(sub)
    return seen


def recording(calls: Calls, stages: tuple[str, ...] = WORK_STAGES, **replace: StageFn) -> dict[str, StageFn]:
    """A registry whose stages note their call in `calls` and report progress; `replace` swaps some out."""
    async def stage(ctx: StageContext) -> None:
        calls.append((ctx.task.id, ctx.stage, ctx.lease_owner))
        await ctx.progress(0.5)
        await asyncio.sleep(0)

    return {name: replace.get(name, stage) for name in stages}


async def until(check: Callable[[], Any], timeout: float = 15, every: float = 0.05) -> None:
    """Poll `check()` (sync or async) until it is true, or fail after `timeout` seconds (for state that announces
    no event, such as a Redis hash emptying)."""
    async def poll() -> None:
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)

    await asyncio.wait_for(poll(), timeout)


class Harness:
    """One test's stage runners and what they share (storage, a thread executor); closed with the test."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, stack: AsyncExitStack) -> None:
        self.settings = settings
        self.pool = pool
        self.stack = stack
        self.storage = LocalStorage(settings.storage_dir, "dubbing", "http://x", settings.jwt_secret)
        self.executor = ThreadPoolExecutor(2)
        stack.callback(self.executor.shutdown, wait=False)
        self.dispatch: backends.NotifyOnly | Dispatcher | None = None

    async def listener(self) -> Listener:
        listener = Listener(self.settings.database_url or "")
        await listener.start()
        self.stack.push_async_callback(listener.stop)
        return listener

    async def services(self, **overrides: Any) -> StageServices:
        """What a process's runner gets: its own pool and listener; `overrides` change its settings."""
        pool = await connection.create_pool(self.settings.database_url or "", max_size=4)
        self.stack.push_async_callback(pool.close)
        settings = self.settings.with_overrides(**overrides)
        return StageServices(settings, Database.on(pool), await self.listener(), self.storage, self.executor, None)

    async def supervisor(self, registry: dict[str, StageFn], **overrides: Any) -> Runner:
        """What `dubbing serve` runs for the settings' QUEUE_BACKEND: a Supervisor or a DramatiqWorker."""
        services = await self.services(**overrides)
        dispatch = await self.stack.enter_async_context(backends.open_dispatch(services.settings, services.db))
        supervisor = backends.stage_runner(services, registry, dispatch)
        await supervisor.start()
        self.stack.push_async_callback(supervisor.stop)
        return supervisor

    async def new_job(self, targets: list[str], owner: str = "u1") -> uuid.UUID:
        """A job as `POST /v1/jobs` makes it: committed, then (dramatiq) its messages sent."""
        job_id = await new_job(self.pool, targets, owner)
        if self.dispatch is None:
            self.dispatch = await self.stack.enter_async_context(
                backends.open_dispatch(self.settings, Database.on(self.pool)))
        await self.dispatch.job_created(job_id)
        return job_id

    async def done(self, job_id: uuid.UUID, timeout: float = 30) -> list[Event]:
        """The job's events up to `done`, read through a listener of the test's own."""
        return await wait_done(await self.listener(), self.pool, job_id, timeout)


@asynccontextmanager
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with AsyncExitStack() as stack:
        pool = await connection.create_pool(settings.database_url or "")
        stack.push_async_callback(pool.close)
        yield Harness(settings, pool, stack)
