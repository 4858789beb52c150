"""service/db/tasks.py on real PostgreSQL: claiming (SKIP LOCKED), leases, retries with backoff, failing, and the
typed `TaskView` the API shows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from service.db import connection, jobs, tasks
from service.db.database import Database
from service.db.jobs import InputObject, NewJob
from service.db.tasks import TaskView

SHA = "0" * 64


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    pool = await connection.create_pool(database_url, max_size=8)
    try:
        yield Database.on(pool)
    finally:
        await pool.close()


async def new_job(db: Database, targets: list[str]) -> uuid.UUID:
    voice = InputObject(f"u1/uploads/{uuid.uuid4()}/voice.wav", "audio/wav", 100, SHA, 1.0)
    job_id, _ = await jobs.create(db.pool, NewJob("u1", "en", targets, voice, None, None, uuid.uuid4().hex))
    return job_id


async def test_concurrent_claimers_never_get_the_same_task(db: Database) -> None:
    for _ in range(6):
        await new_job(db, ["es", "fr", "de", "it", "pt"])  # 30 tasks
    claimers = [f"claimer-{n}" for n in range(6)]
    rounds = await asyncio.gather(*(tasks.claim(db.pool, owner, 4, 60) for owner in claimers for _ in range(2)))
    claimed = [task for batch in rounds for task in batch]
    ids = [task.id for task in claimed]
    assert len(ids) == len(set(ids)) == 30  # 48 asked for: every task once, none twice
    held = {r["id"]: r["lease_owner"] for r in await db.pool.fetch("SELECT id, lease_owner FROM language_tasks")}
    assert all(held[task.id] == task.lease_owner for task in claimed)
    assert await tasks.claim(db.pool, "late", 10, 60) == []  # every lease is live


async def test_a_claim_is_the_first_attempt_and_counts_the_claim(db: Database) -> None:
    job_id = await new_job(db, ["es"])
    [task] = await tasks.claim(db.pool, "w1", 5, 60)
    assert (task.job_id, task.target_language, task.stage, task.attempts, task.claims, task.lease_owner) == (
        job_id, "es", "queued", 1, 1, "w1")


async def test_an_expired_lease_makes_the_task_claimable_again(db: Database) -> None:
    await new_job(db, ["es"])
    [first] = await tasks.claim(db.pool, "w1", 1, lease_seconds=0.2)
    assert await tasks.claim(db.pool, "w2", 1, 60) == []
    while not (taken := await tasks.claim(db.pool, "w2", 1, 60)):  # the lease runs out on the server's clock
        await asyncio.sleep(0.05)
    [second] = taken
    assert second.id == first.id and (second.attempts, second.claims) == (1, 2)  # not the task's failure
    # The first holder's lease is gone: its heartbeat and writes are refused, the new holder's are not.
    assert not await tasks.heartbeat(db.pool, first.id, "w1", 60)
    assert not await tasks.enter_stage(db, first.id, "w1", "stt")
    assert await tasks.stage_of(db.pool, first.id, "w1") is None
    assert await tasks.heartbeat(db.pool, first.id, "w2", 60)
    assert await tasks.enter_stage(db, first.id, "w2", "stt")


async def test_the_leases_of_dead_processes_end_at_once(db: Database) -> None:
    await new_job(db, ["es", "fr"])
    await tasks.claim(db.pool, "host-a:1:dead", 1, 600)
    await tasks.claim(db.pool, "host-a:2:alive", 1, 600)
    assert set(await tasks.owners_holding_leases(db.pool, "host-a:")) == {"host-a:1:dead", "host-a:2:alive"}
    assert await tasks.expire_leases(db.pool, ["host-a:1:dead"]) == 1
    [again] = await tasks.claim(db.pool, "host-b:1:new", 5, 60)
    assert again.claims == 2


async def test_a_retry_spends_an_attempt_and_waits_out_its_backoff(db: Database) -> None:
    await new_job(db, ["es"])
    [task] = await tasks.claim(db.pool, "w1", 1, 60)
    assert await tasks.enter_stage(db, task.id, "w1", "stt")
    assert await tasks.advance(db, task.id, "w1", "stt") == "translating"
    assert await tasks.retry_later(db, task.id, "w1", 300, "engine_timeout", "took too long")
    row = await db.pool.fetchrow(
        "SELECT stage, attempts, lease_owner, run_after - now() AS wait FROM language_tasks WHERE id = $1", task.id)
    assert (row["stage"], row["attempts"], row["lease_owner"]) == ("translating", 2, None)
    assert 299 < row["wait"].total_seconds() <= 300
    assert await tasks.claim(db.pool, "w2", 1, 60) == []  # not before its backoff
    await db.pool.execute("UPDATE language_tasks SET run_after = now() WHERE id = $1", task.id)
    [again] = await tasks.claim(db.pool, "w2", 1, 60)
    assert (again.stage, again.attempts) == ("translating", 2)  # from the stage it was in


async def test_a_handed_back_task_is_claimed_again_without_spending_an_attempt(db: Database) -> None:
    await new_job(db, ["es"])
    [task] = await tasks.claim(db.pool, "w1", 1, 600)
    await tasks.release(db.pool, task.id, "w1")
    [again] = await tasks.claim(db.pool, "w2", 1, 60)
    assert (again.id, again.attempts, again.claims) == (task.id, 1, 2)


async def test_a_failed_task_is_terminal_with_its_code_and_the_job_ends(db: Database) -> None:
    job_id = await new_job(db, ["es"])
    [task] = await tasks.claim(db.pool, "w1", 1, 60)
    assert await tasks.fail(db, task.id, "w1", "voice_unavailable", "x" * 3000, "dubbing")
    [view] = await tasks.for_job(db.pool, job_id)
    assert (view.stage, view.error_code, len(view.error_message or "")) == ("failed", "voice_unavailable", 2000)
    assert view.finished_at is not None
    assert await tasks.ending_of(db.pool, task.id) == ("failed", True)
    assert await tasks.claim(db.pool, "w2", 1, 60) == []
    assert not await tasks.heartbeat(db.pool, task.id, "w1", 60)  # a finished task has no lease to keep


async def test_progress_only_moves_forward_across_stages() -> None:
    values = [tasks.overall_progress(stage, f) for stage in ("stt", "translating", "dubbing", "mixing", "exporting")
              for f in (0.0, 0.5, 1.0)]
    assert values == sorted(values) and values[0] == 0.0
    assert tasks.overall_progress("complete", 0.0) == 1.0
    assert tasks.overall_progress("stt", 7.0) == tasks.overall_progress("stt", 1.0)  # clamped


async def test_usage_counters_add_up_under_concurrent_stages(db: Database) -> None:
    job_id = await new_job(db, ["es"])
    [view] = await tasks.for_job(db.pool, job_id)
    await asyncio.gather(*(tasks.add_usage(db.pool, view.id, {"characters": 10, "seconds": 0.5}) for _ in range(8)))
    assert await tasks.usage_of(db.pool, view.id) == {"characters": 80, "seconds": 4.0}


async def test_for_job_gives_typed_views_in_language_order_with_the_api_shape(db: Database) -> None:
    job_id = await new_job(db, ["fr", "es"])
    await new_job(db, ["de"])  # another job's task is not among them
    views = await tasks.for_job(db.pool, job_id)
    assert all(isinstance(v, TaskView) for v in views)
    assert [v.target_language for v in views] == ["es", "fr"]
    shown = views[0].to_json()
    assert set(shown) == {"id", "target_language", "stage", "progress", "attempts", "error", "started_at",
                          "finished_at", "usage"}
    assert (shown["stage"], shown["progress"], shown["error"], shown["started_at"]) == ("queued", 0.0, None, None)
