"""QUEUE_BACKEND=dramatiq delivery semantics on real PostgreSQL and a real Redis, workers in this process
(each with its own pool, listener and Redis client, as separate processes would have), stages defined here."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.db import connection
from service.db.database import Database
from service.domain import WORK_STAGES
from service.queue.dispatcher import Dispatcher
from service.queue.redis_queue import QUEUE, RedisQueue
from service.settings import Settings
from service.stages.context import StageContext, StageFn
from service.supervisor import owners
from service.supervisor.dramatiq_worker import DramatiqWorker
from service.supervisor.runner import TaskRunner
from tests.support.harness import Calls, Harness, recording, until
from tests.support.redis import redis_server, with_backend


class Workers(Harness):
    """The harness with Dramatiq workers made by hand, and the API's own dispatcher and queue to look into."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, stack: AsyncExitStack) -> None:
        super().__init__(settings, pool, stack)
        self.queue = self.redis_queue()
        self.api = Dispatcher(settings, Database.on(pool), self.queue)  # what POST /v1/jobs calls
        self.dispatch = self.api

    def redis_queue(self) -> RedisQueue:
        queue = RedisQueue(self.settings.redis_url, self.settings.redis_namespace)
        self.stack.callback(queue.close)
        return queue

    async def worker(self, registry: dict[str, StageFn], **overrides: Any) -> DramatiqWorker:
        services = await self.services(**overrides)
        runner = TaskRunner(services, registry, owners.new_owner_id())
        worker = DramatiqWorker(runner, Dispatcher(services.settings, services.db, self.redis_queue()))
        await worker.start()
        self.stack.push_async_callback(worker.stop)
        return worker

    async def task_ids(self, job_id: uuid.UUID) -> dict[str, uuid.UUID]:
        rows = await self.pool.fetch("SELECT id, target_language FROM language_tasks WHERE job_id = $1", job_id)
        return {r["target_language"]: r["id"] for r in rows}


@asynccontextmanager
async def workers(settings: Settings) -> AsyncIterator[Workers]:
    async with AsyncExitStack() as stack:
        pool = await connection.create_pool(settings.database_url or "")
        stack.push_async_callback(pool.close)
        yield Workers(settings, pool, stack)


@pytest.fixture
def dramatiq_settings(settings: Settings, redis_available: str, redis_namespace: str) -> Settings:
    return with_backend(settings, "dramatiq", redis_available, redis_namespace).with_overrides(
        poll_interval_seconds=0.3)


async def test_a_message_delivered_again_and_again_runs_the_task_once(dramatiq_settings: Settings) -> None:
    calls: Calls = []
    async with workers(dramatiq_settings) as w:
        job_id = await w.new_job(["es"])
        [task_id] = (await w.task_ids(job_id)).values()
        # What Redis hands out again after a worker it thought dead: the same task, twice more.
        await w.queue.send([(task_id, job_id), (task_id, job_id)])
        assert await w.queue.waiting() == 3
        await w.worker(recording(calls))
        await w.worker(recording(calls))
        history = await w.done(job_id)
        await w.queue.send([(task_id, job_id)])  # and once more after it completed
        bodies = f"{dramatiq_settings.redis_namespace}:{QUEUE}.msgs"
        await until(lambda: w.queue.broker.client.hlen(bodies) == 0)  # every message fetched and acked
        assert Counter(stage for _, stage, _ in calls) == dict.fromkeys(WORK_STAGES, 1)
        row = await w.pool.fetchrow("SELECT stage, attempts, claims FROM language_tasks WHERE id = $1", task_id)
        assert (row["stage"], row["attempts"], row["claims"]) == ("complete", 1, 1)
        assert [e.kind for e in history].count("done") == 1


async def test_redis_restarted_between_enqueue_and_consume_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    calls: Calls = []
    with redis_server(tmp_path / "redis") as server:
        own = with_backend(settings, "dramatiq", server.url).with_overrides(poll_interval_seconds=0.3)
        async with workers(own) as w:
            server.stop()
            down = await w.new_job(["es"])  # Redis is down: the job is made, its message is not
            server.start()
            sent = await w.new_job(["fr", "de"])
            assert await w.queue.waiting() == 2
            server.restart()  # the two messages are gone with it
            assert await w.queue.waiting() == 0
            await w.worker(recording(calls))
            for job_id in (down, sent):
                assert (await w.done(job_id))[-1].data == {"status": "complete"}
        assert Counter(stage for _, stage, _ in calls) == dict.fromkeys(WORK_STAGES, 3)


async def test_a_message_lost_otherwise_is_sent_again_once_nothing_waits(dramatiq_settings: Settings) -> None:
    calls: Calls = []
    async with workers(dramatiq_settings.with_overrides(lease_seconds=0.5)) as w:
        job_id = await w.new_job(["es"])
        # Gone without a restart (evicted, or fetched by a worker that died before it claimed the task).
        w.queue.broker.client.delete(f"{dramatiq_settings.redis_namespace}:{QUEUE}")
        await w.worker(recording(calls))
        assert (await w.done(job_id))[-1].data == {"status": "complete"}
        assert Counter(stage for _, stage, _ in calls) == dict.fromkeys(WORK_STAGES, 1)


async def test_a_draining_worker_hands_its_stage_back_and_another_finishes_it(dramatiq_settings: Settings) -> None:
    calls: Calls = []
    entered = asyncio.Event()
    finished: list[str] = []

    async def mixing(ctx: StageContext) -> None:
        calls.append((ctx.task.id, ctx.stage, ctx.lease_owner))
        if not entered.is_set():
            entered.set()
            await asyncio.Event().wait()  # longer than the drain allows
        finished.append(ctx.lease_owner)

    async with workers(dramatiq_settings) as w:
        first = await w.worker(recording(calls, mixing=mixing))
        second = await w.worker(recording(calls, mixing=mixing))
        job_id = await w.new_job(["es"])
        await asyncio.wait_for(entered.wait(), 10)
        holder, other = (first, second) if calls[-1][2] == first.owner_id else (second, first)
        await holder.drain(0.3)
        history = await w.done(job_id)
        assert finished == [other.owner_id]
        stages = [(stage, owner) for _, stage, owner in calls]
        assert stages.count(("mixing", holder.owner_id)) == 1 and stages.count(("mixing", other.owner_id)) == 1
        assert [s for s, _ in stages].count("exporting") == 1
        assert [e.stage for e in history if e.kind == "stage"].count("complete") == 1
        row = await w.pool.fetchrow("SELECT attempts, claims FROM language_tasks")
        assert (row["attempts"], row["claims"]) == (1, 2)  # handed back: not the task's failure


async def test_a_job_s_languages_spread_over_idle_workers(dramatiq_settings: Settings) -> None:
    calls: Calls = []
    started: dict[str, str] = {}
    both = asyncio.Event()

    async def stt(ctx: StageContext) -> None:
        started[ctx.task.target_language] = ctx.lease_owner
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)

    async with workers(dramatiq_settings) as w:
        first = await w.worker(recording(calls, stt=stt))
        second = await w.worker(recording(calls, stt=stt))
        await until(lambda: first.running and second.running)
        job_id = await w.new_job(["es", "ca"])
        await w.done(job_id)
        assert set(started.values()) == {first.owner_id, second.owner_id}, started
