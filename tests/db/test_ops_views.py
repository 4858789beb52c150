"""The `ops` views and functions (sql/011) on fixture data made by the service's own table functions: what an
operator reads in each, and that `ops.retry_task` / `ops.cancel_job` are transitions like any other (an event row,
a NOTIFY that open progress streams and supervisors hear)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from service.db import artifacts, connection, jobs, tasks, uploads
from service.db.artifacts import NewArtifact
from service.db.database import Database
from service.db.events import Event
from service.db.jobs import InputObject, NewJob
from service.db.listener import Listener
from service.db.uploads import Upload
from service.supervisor import stage_report

SHA = "0" * 64
WORKER = "host-a:4242:999-0000abcd"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    pool = await connection.create_pool(database_url, max_size=4)
    try:
        yield Database.on(pool)
    finally:
        await pool.close()


async def new_job(db: Database, owner: str, targets: list[str], voice_bytes: int = 100, background_bytes: int = 0,
                  seconds: float = 2.0) -> uuid.UUID:
    voice = InputObject(f"{owner}/uploads/{uuid.uuid4()}/voice.wav", "audio/wav", voice_bytes, SHA, seconds)
    background = (InputObject(f"{owner}/uploads/{uuid.uuid4()}/bed.wav", "audio/wav", background_bytes, SHA, seconds)
                  if background_bytes else None)
    job_id, _ = await jobs.create(db.pool, NewJob(owner, "en", targets, voice, background, None, uuid.uuid4().hex))
    return job_id


async def claim_one(db: Database, job_id: uuid.UUID, owner: str = WORKER, lease: float = 60) -> uuid.UUID:
    """Claim one of the job's tasks, as a supervisor would: the other jobs' tasks are put out of reach meanwhile
    (their run_after moved a century on, and back)."""
    away = "UPDATE language_tasks SET run_after = run_after {} interval '100 years' WHERE job_id <> $1"
    await db.pool.execute(away.format("+"), job_id)
    try:
        claimed = await tasks.claim(db.pool, owner, 1, lease)
    finally:
        await db.pool.execute(away.format("-"), job_id)
    assert len(claimed) == 1 and claimed[0].job_id == job_id
    return claimed[0].id


async def task_of(db: Database, job_id: uuid.UUID, language: str) -> uuid.UUID:
    return uuid.UUID(str(await db.pool.fetchval(
        "SELECT id FROM language_tasks WHERE job_id = $1 AND target_language = $2", job_id, language)))


async def test_queue_depth_counts_each_unfinished_stage(db: Database) -> None:
    waiting_job = await new_job(db, "u1", ["fr"])
    await db.pool.execute("UPDATE language_tasks SET run_after = now() - interval '10 minutes' WHERE job_id = $1",
                          waiting_job)
    running_job = await new_job(db, "u1", ["es"])
    running = await claim_one(db, running_job)
    await tasks.enter_stage(db, running, WORKER, "stt")
    backoff_job = await new_job(db, "u2", ["es"])
    backing_off = await claim_one(db, backoff_job)
    await tasks.enter_stage(db, backing_off, WORKER, "stt")
    await tasks.retry_later(db, backing_off, WORKER, 300, "provider_unavailable", "Deepgram answered 503")
    done_job = await new_job(db, "u3", ["it"])
    done = await claim_one(db, done_job)
    await tasks.enter_stage(db, done, WORKER, "complete")
    stalled_job = await new_job(db, "u2", ["de"])
    stalled = await claim_one(db, stalled_job)
    await tasks.enter_stage(db, stalled, WORKER, "dubbing")
    await db.pool.execute("UPDATE language_tasks SET lease_expires_at = now() - interval '30 seconds', "
                          "run_after = now() - interval '10 minutes' WHERE id = $1", stalled)

    rows = {r["stage"]: dict(r) for r in await db.pool.fetch("SELECT * FROM ops.queue_depth")}
    assert list(rows) == ["queued", "stt", "translating", "dubbing", "mixing", "exporting"]
    figures = {s: (r["tasks"], r["claimable"], r["running"], r["waiting_to_retry"]) for s, r in rows.items()}
    assert figures == {"queued": (1, 1, 0, 0), "stt": (2, 0, 1, 1), "translating": (0, 0, 0, 0),
                       "dubbing": (1, 1, 0, 0), "mixing": (0, 0, 0, 0), "exporting": (0, 0, 0, 0)}
    assert 600 <= rows["queued"]["oldest_claimable_age_seconds"] < 660
    assert 30 <= rows["dubbing"]["oldest_claimable_age_seconds"] < 90  # claimable since its lease ran out
    assert rows["stt"]["oldest_claimable_since"] is None


async def test_running_tasks_show_holder_lease_age_and_heartbeat(db: Database) -> None:
    job_id = await new_job(db, "u1", ["es"])
    task_id = await claim_one(db, job_id)
    await tasks.enter_stage(db, task_id, WORKER, "mixing")
    await db.pool.execute("UPDATE language_tasks SET leased_at = now() - interval '5 minutes', "
                          "heartbeat_at = now() - interval '5 minutes' WHERE id = $1", task_id)
    assert await tasks.heartbeat(db.pool, task_id, WORKER, 60)
    other = await new_job(db, "u2", ["fr"])  # queued, not running
    row = await db.pool.fetchrow("SELECT * FROM ops.running_tasks")
    assert await db.pool.fetchval("SELECT count(*) FROM ops.running_tasks") == 1
    assert (row["task_id"], row["job_id"], row["owner_id"], row["stage"]) == (task_id, job_id, "u1", "mixing")
    assert row["lease_owner"] == WORKER and row["attempts"] == 1 and row["claims"] == 1
    assert 300 <= row["lease_age_seconds"] < 360
    assert row["heartbeat_age_seconds"] < 5  # the heartbeat just now renewed it
    assert row["lease_expires_at"] > row["last_heartbeat_at"]
    assert other not in {r["job_id"] for r in await db.pool.fetch("SELECT job_id FROM ops.running_tasks")}


async def test_stalled_tasks_are_expired_leases_nobody_claimed(db: Database) -> None:
    job_id = await new_job(db, "u1", ["es", "fr"])
    dead = await claim_one(db, job_id, owner="host-b:1:1-dead")
    await tasks.enter_stage(db, dead, "host-b:1:1-dead", "translating")
    await db.pool.execute("UPDATE language_tasks SET lease_expires_at = now() - interval '2 minutes' WHERE id = $1",
                          dead)
    alive = await claim_one(db, job_id)
    rows = await db.pool.fetch("SELECT * FROM ops.stalled_tasks")
    assert [(r["task_id"], r["lease_owner"], r["stage"]) for r in rows] == [(dead, "host-b:1:1-dead", "translating")]
    assert 120 <= rows[0]["stalled_seconds"] < 180
    # A supervisor claims it again: it is no longer stalled, and it runs under its new holder.
    await db.pool.execute("UPDATE language_tasks SET run_after = now() WHERE id = $1", dead)
    assert [t.id for t in await tasks.claim(db.pool, WORKER, 5, 60)] == [dead]
    assert await db.pool.fetch("SELECT * FROM ops.stalled_tasks") == []
    assert {r["task_id"] for r in await db.pool.fetch("SELECT task_id FROM ops.running_tasks")} == {dead, alive}


async def test_failures_24h_by_code_and_stage(db: Database) -> None:
    flaky = await new_job(db, "u1", ["es"])
    task_id = await claim_one(db, flaky)
    await tasks.enter_stage(db, task_id, WORKER, "translating")
    await tasks.retry_later(db, task_id, WORKER, 0.01, "provider_timeout", "OpenAI timed out")
    await db.pool.execute("UPDATE language_tasks SET run_after = now() WHERE id = $1", task_id)
    await claim_one(db, flaky)
    await tasks.fail(db, task_id, WORKER, "provider_timeout", "OpenAI timed out again", "translating")
    for owner in ("u2", "u3"):
        broken = await new_job(db, owner, ["es"])
        broken_task = await claim_one(db, broken)
        await tasks.enter_stage(db, broken_task, WORKER, "stt")
        await tasks.fail(db, broken_task, WORKER, "audio_undecodable", f"{owner}'s file is not audio", "stt")
    old = await new_job(db, "u4", ["es"])
    old_task = await claim_one(db, old)
    await tasks.fail(db, old_task, WORKER, "ancient_error", "two days ago", "stt")
    await db.pool.execute("UPDATE task_events SET created_at = now() - interval '2 days' WHERE job_id = $1", old)

    rows = await db.pool.fetch("SELECT * FROM ops.failures_24h")
    figures = [(r["error_code"], r["stage"], r["failed_tasks"], r["retried"], r["jobs"], r["users"]) for r in rows]
    assert figures == [("audio_undecodable", "stt", 2, 0, 2, 2), ("provider_timeout", "translating", 1, 1, 1, 1)]
    assert rows[1]["last_message"] == "OpenAI timed out again" and rows[1]["last_task_id"] == task_id


async def test_stage_durations_per_stage_and_engine(db: Database) -> None:
    job_ids = [await new_job(db, "u1", ["es"], seconds=4.0) for _ in range(20)]
    for index, job_id in enumerate(job_ids, start=1):
        task_id = await claim_one(db, job_id)
        await tasks.enter_stage(db, task_id, WORKER, "stt")
        job = await jobs.by_id(db.pool, job_id)
        report = stage_report.finished("stt", "faster-whisper", float(index), {"segments": 3}, job)
        await tasks.advance(db, task_id, WORKER, "stt", report)
        if index <= 2:
            report = stage_report.finished("translating", "apertium", 0.5, {"characters": 120}, job)
            await tasks.advance(db, task_id, WORKER, "translating", report)
    # A week-old run of another engine: outside the default 24 hours, inside a 7-day window.
    await db.pool.execute("""UPDATE task_events SET created_at = now() - interval '3 days',
                                 data = jsonb_set(data, '{engine}', '"deepgram"')
                             WHERE job_id = $1 AND data ->> 'finished_stage' = 'translating'""", job_ids[1])

    rows = [dict(r) for r in await db.pool.fetch("SELECT * FROM ops.stage_durations")]
    assert [(r["stage"], r["engine"], r["runs"]) for r in rows] == [("stt", "faster-whisper", 20),
                                                                      ("translating", "apertium", 1)]
    stt = rows[0]
    assert stt["p50_seconds"] == pytest.approx(10.5) and stt["p95_seconds"] == pytest.approx(19.05)
    assert stt["max_seconds"] == 20 and stt["total_seconds"] == 210 and stt["audio_seconds"] == 80
    assert stt["x_realtime"] == pytest.approx(80 / 210)
    week = await db.pool.fetch("SELECT stage, engine, runs FROM ops.stage_duration_stats(interval '7 days')")
    assert [tuple(r) for r in week] == [("stt", "faster-whisper", 20), ("translating", "apertium", 1),
                                        ("translating", "deepgram", 1)]


async def test_throughput_per_hour_over_two_days(db: Database) -> None:
    now = await db.pool.fetchval("SELECT date_trunc('hour', now())")
    complete = await new_job(db, "u1", ["es", "fr"], seconds=30.0)
    failed = await new_job(db, "u1", ["de"])
    ancient = await new_job(db, "u2", ["it"])
    for job_id, stage, hours_ago in ((complete, "complete", 0), (failed, "failed", 3), (ancient, "cancelled", 50)):
        await db.pool.execute(
            """UPDATE language_tasks SET stage = $2, progress = CASE WHEN $2 = 'complete' THEN 1 ELSE 0 END,
                   error_code = CASE WHEN $2 = 'failed' THEN 'x' END,
                   finished_at = date_trunc('hour', now()) - make_interval(hours => $3) + interval '1 second'
               WHERE job_id = $1""", job_id, stage, hours_ago)
    rows = {r["hour"]: dict(r) for r in await db.pool.fetch("SELECT * FROM ops.throughput_hourly")}
    assert len(rows) == 48 and max(rows) == now and min(rows) == now - timedelta(hours=47)
    assert (rows[now]["jobs_created"], rows[now]["tasks_completed"], rows[now]["audio_seconds_dubbed"]) == (3, 2, 60)
    assert rows[now - timedelta(hours=3)]["tasks_failed"] == 1
    assert sum(r["tasks_cancelled"] for r in rows.values()) == 0  # 50 hours ago is outside the window
    assert sum(r["tasks_completed"] + r["tasks_failed"] for r in rows.values()) == 3


async def test_storage_by_user_and_by_kind_live_and_deleted(db: Database) -> None:
    kept = await new_job(db, "big", ["es"], voice_bytes=1000, background_bytes=500)
    task_id = await task_of(db, kept, "es")
    for kind, size in (("master_wav", 40_000), ("manifest", 300)):
        await artifacts.record(db.pool, NewArtifact(kept, task_id, "es", kind, f"big/jobs/{kept}/es/{kind}", SHA, size,
                                                    "audio/wav"), timedelta(hours=48))
    await db.pool.execute("UPDATE artifacts SET deleted_at = now() WHERE kind = 'manifest'")
    gone = await new_job(db, "small", ["es"], voice_bytes=2000)
    await db.pool.execute("UPDATE jobs SET inputs_deleted_at = now() WHERE id = $1", gone)
    await uploads.record(db.pool, [Upload("small/uploads/x/voice.wav", "small", "voice", "audio/wav", 700),
                                   Upload("lurker/uploads/y/voice.wav", "lurker", "voice", "audio/wav", 50)],
                         datetime.now().astimezone() + timedelta(hours=2))

    by_user = {r["owner_id"]: dict(r) for r in await db.pool.fetch("SELECT * FROM ops.storage_by_user")}
    assert list(by_user) == ["big", "small", "lurker"]  # largest first
    assert by_user["big"]["live_bytes"] == 1000 + 500 + 40_000 and by_user["big"]["deleted_bytes"] == 300
    assert (by_user["big"]["artifacts_live"], by_user["big"]["artifact_bytes_deleted"]) == (1, 300)
    assert (by_user["small"]["live_bytes"], by_user["small"]["deleted_bytes"]) == (700, 2000)
    assert (by_user["small"]["input_bytes_deleted"], by_user["small"]["unused_upload_bytes_live"]) == (2000, 700)
    assert (by_user["lurker"]["jobs"], by_user["lurker"]["live_bytes"]) == (0, 50)

    by_kind = {r["kind"]: (r["live_objects"], r["live_bytes"], r["deleted_objects"], r["deleted_bytes"])
               for r in await db.pool.fetch("SELECT * FROM ops.storage_by_kind")}
    assert by_kind == {"master_wav": (1, 40_000, 0, 0), "manifest": (0, 0, 1, 300), "voice_input": (1, 1000, 1, 2000),
                       "background_input": (1, 500, 0, 0), "unused_upload": (2, 750, 0, 0)}


async def test_jobs_per_user_per_day(db: Database) -> None:
    today = [await new_job(db, "u1", ["es", "fr"]), await new_job(db, "u1", ["es"])]
    yesterday = await new_job(db, "u2", ["es"], seconds=10.0)
    long_ago = await new_job(db, "u2", ["es"])
    await db.pool.execute("UPDATE jobs SET created_at = now() - interval '1 day' WHERE id = $1", yesterday)
    await db.pool.execute("UPDATE jobs SET created_at = now() - interval '40 days' WHERE id = $1", long_ago)
    await db.pool.execute("UPDATE language_tasks SET stage = 'complete', progress = 1, finished_at = now() "
                          "WHERE job_id = $1", today[0])
    await db.pool.execute("UPDATE jobs SET deleted_at = now() WHERE id = $1", today[1])
    rows = [dict(r) for r in await db.pool.fetch("SELECT * FROM ops.jobs_per_user_day")]
    assert [(r["owner_id"], r["jobs"], r["languages"], r["tasks_completed"], r["deleted_jobs"]) for r in rows] == [
        ("u1", 2, 3, 2, 1), ("u2", 1, 1, 0, 0)]
    assert rows[0]["day"] - rows[1]["day"] in (timedelta(days=1), timedelta(days=0))
    assert rows[1]["audio_seconds"] == 10.0


async def test_retention_runs_view_lists_the_newest_first(db: Database) -> None:
    await db.pool.execute("""INSERT INTO retention_runs (runner, trigger, started_at, finished_at, report)
                             VALUES ('cron', 'command', now() - interval '2 hours', now() - interval '2 hours', '{}'),
                                    ('host:1', 'schedule', now() - interval '1 minute', now(), '{"artifacts": 3}')""")
    rows = await db.pool.fetch("SELECT trigger, seconds, report FROM ops.retention_runs")
    assert [r["trigger"] for r in rows] == ["schedule", "command"]
    assert 59 <= rows[0]["seconds"] <= 61 and rows[0]["report"] == {"artifacts": 3}


async def listening(database_url: str, job_id: uuid.UUID) -> tuple[Listener, asyncio.Queue[Event | str]]:
    listener = Listener(database_url)
    await listener.start()
    return listener, listener.subscribe(str(job_id)).queue


async def next_events(queue: asyncio.Queue[Event | str], count: int) -> list[Event]:
    seen: list[Event] = []
    while len(seen) < count:
        item = await asyncio.wait_for(queue.get(), 10)
        if isinstance(item, Event):
            seen.append(item)
    return seen


async def test_retry_task_requeues_a_failed_task_as_a_transition(db: Database, database_url: str) -> None:
    job_id = await new_job(db, "u1", ["es", "fr"])
    failed = await claim_one(db, job_id)
    await tasks.enter_stage(db, failed, WORKER, "stt")
    await tasks.fail(db, failed, WORKER, "stt_failed", "Whisper crashed", "stt")
    await db.pool.execute("INSERT INTO transcripts (job_id, state, error_code, error_message) "
                          "VALUES ($1, 'failed', 'stt_failed', 'Whisper crashed')", job_id)
    other = await claim_one(db, job_id)
    await tasks.enter_stage(db, other, WORKER, "complete")
    assert await db.pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "partial"

    listener, queue = await listening(database_url, job_id)
    try:
        listener.tasks_ready.clear()
        appended = await db.pool.fetchval("SELECT ops.retry_task($1)", failed)
        heard = await next_events(queue, 1)
        await asyncio.wait_for(listener.tasks_ready.wait(), 10)  # supervisors are woken
    finally:
        await listener.stop()
    assert [e["seq"] for e in appended] == [heard[0].seq]
    assert (heard[0].kind, heard[0].stage, heard[0].task_id) == ("stage", "queued", str(failed))
    assert heard[0].data["retried_by"] == "operator"
    assert heard[0].data["previous"]["error_code"] == "stt_failed" and heard[0].data["previous"]["attempts"] == 1
    row = await db.pool.fetchrow("SELECT * FROM language_tasks WHERE id = $1", failed)
    assert (row["stage"], row["error_code"], row["attempts"], row["finished_at"]) == ("queued", None, 0, None)
    assert await db.pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "running"
    assert await db.pool.fetchval("SELECT count(*) FROM transcripts WHERE job_id = $1", job_id) == 0
    claimed = await tasks.claim(db.pool, WORKER, 5, 60)
    assert [(t.id, t.attempts) for t in claimed] == [(failed, 1)]  # a fresh budget of attempts

    with pytest.raises(asyncpg.PostgresError, match="is running"):
        await db.pool.fetchval("SELECT ops.retry_task($1)", failed)
    with pytest.raises(asyncpg.PostgresError, match="is complete"):
        await db.pool.fetchval("SELECT ops.retry_task($1)", other)
    with pytest.raises(asyncpg.PostgresError, match="no task"):
        await db.pool.fetchval("SELECT ops.retry_task($1)", uuid.uuid4())


async def test_retry_task_makes_a_waiting_task_claimable_now(db: Database) -> None:
    job_id = await new_job(db, "u1", ["es"])
    task_id = await claim_one(db, job_id)
    await tasks.enter_stage(db, task_id, WORKER, "dubbing")
    await tasks.retry_later(db, task_id, WORKER, 600, "provider_unavailable", "503")
    assert await tasks.claim(db.pool, WORKER, 5, 60) == []
    await db.pool.fetchval("SELECT ops.retry_task($1)", task_id)
    claimed = await tasks.claim(db.pool, WORKER, 5, 60)
    assert [(t.id, t.stage, t.attempts) for t in claimed] == [(task_id, "dubbing", 2)]  # the retry spent one


async def test_retry_task_refuses_a_job_whose_inputs_are_gone(db: Database) -> None:
    job_id = await new_job(db, "u1", ["es"])
    task_id = await claim_one(db, job_id)
    await tasks.fail(db, task_id, WORKER, "x", "y", "queued")
    await db.pool.execute("UPDATE jobs SET inputs_deleted_at = now() WHERE id = $1", job_id)
    with pytest.raises(asyncpg.PostgresError, match="inputs of job"):
        await db.pool.fetchval("SELECT ops.retry_task($1)", task_id)


async def test_cancel_job_from_sql_is_the_apis_transition(db: Database, database_url: str) -> None:
    job_id = await new_job(db, "u1", ["es", "fr"])
    running = await claim_one(db, job_id)
    await tasks.enter_stage(db, running, WORKER, "stt")
    listener, queue = await listening(database_url, job_id)
    try:
        await db.pool.fetchval("SELECT ops.cancel_job($1)", job_id)
        heard = await next_events(queue, 3)
    finally:
        await listener.stop()
    assert [(e.kind, e.stage, e.target_language) for e in heard] == [
        ("stage", "cancelled", "es"), ("stage", "cancelled", "fr"), ("done", None, None)]
    assert heard[-1].data == {"status": "cancelled"}
    assert await db.pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "cancelled"
    assert not await tasks.heartbeat(db.pool, running, WORKER, 60)  # the worker loses its lease
    assert await db.pool.fetchval("SELECT ops.cancel_job($1)", job_id) == []  # nothing left to cancel
    with pytest.raises(asyncpg.PostgresError, match="no job"):
        await db.pool.fetchval("SELECT ops.cancel_job($1)", uuid.uuid4())
