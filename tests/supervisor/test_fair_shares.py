"""Fair shares between users: claims alternate between users with runnable tasks, no user runs more than
MAX_TASKS_PER_USER at once, and one user's long queue delays another's first task by at most one task slot."""

from __future__ import annotations

import asyncio
import uuid

from service.db import tasks
from service.settings import Settings
from service.stages.context import StageContext
from tests.support.harness import harness, new_job


async def test_claims_alternate_between_users_and_respect_the_cap(settings: Settings) -> None:
    async with harness(settings) as h:
        for _ in range(10):
            await new_job(h.pool, ["es"], owner="alice")
        bob = await new_job(h.pool, ["es", "fr"], owner="bob")
        carol = await new_job(h.pool, ["es"], owner="carol")
        owners = {r["id"]: r["owner_id"] for r in await h.pool.fetch("SELECT id, owner_id FROM language_tasks")}
        claimed = await tasks.claim(h.pool, "w1", 3, 60, per_user=2)
        # The oldest task of each user first: alice's 10 older tasks do not push bob and carol back.
        assert sorted(owners[t.id] for t in claimed) == ["alice", "bob", "carol"]
        assert carol in {t.job_id for t in claimed}
        more = await tasks.claim(h.pool, "w2", 4, 60, per_user=2)
        assert sorted(owners[t.id] for t in more) == ["alice", "bob"]  # alice reaches her cap; carol has no more
        assert bob in {t.job_id for t in more}
        assert await tasks.claim(h.pool, "w3", 4, 60, per_user=2) == []


async def test_a_second_users_first_task_waits_at_most_one_task_slot(backend_settings: Settings) -> None:
    """Two slots, both of them alice's (MAX_TASKS_PER_USER=2), twenty of her tasks queued; bob's job starts as soon
    as one of her tasks ends, before any other of hers. Under QUEUE_BACKEND=dramatiq too: alice's twenty messages
    are ahead of bob's on Redis, and the worker still takes bob's task first."""
    settings = backend_settings
    started: list[uuid.UUID] = []  # the job of each task whose stt stage began, in order

    async def stage(ctx: StageContext) -> None:
        if ctx.stage == "stt":
            started.append(ctx.task.job_id)
        await asyncio.sleep(0.15 if ctx.stage == "stt" else 0)

    async with harness(settings) as h:
        registry = {name: stage for name in ("stt", "translating", "dubbing", "mixing", "exporting")}
        for _ in range(20):
            await h.new_job(["es"], owner="alice")
        await h.supervisor(registry, max_concurrent_tasks=2, max_tasks_per_user=2)
        while len(started) < 2:
            await asyncio.sleep(0.01)
        bob = await h.new_job(["es"], owner="bob")
        await h.done(bob, timeout=30)
        after = started[2:]
        assert after.index(bob) <= 1, started  # at most one of alice's (the slot freed first) before bob
