"""The supervisor on real PostgreSQL, with stage functions defined here; every test runs once per QUEUE_BACKEND
(postgres: the SKIP LOCKED supervisor; dramatiq: workers fed by messages on a real Redis)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from service.db import events, jobs, tasks
from service.db.database import Database
from service.db.listener import Listener
from service.domain import WORK_STAGES
from service.errors import StageError
from service.settings import Settings
from service.stages.context import StageContext
from service.supervisor import owners
from tests.support.harness import Runner, harness, new_job, recording, wait_done
from tests.support.redis import settings_for_backend


@pytest.fixture
def settings(settings: Settings, queue_backend: str, request: pytest.FixtureRequest) -> Settings:
    return settings_for_backend(settings, queue_backend, request)


async def test_concurrent_claimers_run_each_task_exactly_once(settings: Settings) -> None:
    calls: list[tuple[uuid.UUID, str, str]] = []
    async with harness(settings) as h:
        job_ids = [await h.new_job(["es", "fr", "de"]) for _ in range(20)]
        # One user's tasks: MAX_TASKS_PER_USER as high as all the slots, so the cap does not serialise them.
        supervisors = [await h.supervisor(recording(calls), max_concurrent_tasks=3, claim_batch_size=2,
                                          max_tasks_per_user=12) for _ in range(4)]
        listener = await h.listener()
        for job_id in job_ids:
            await wait_done(listener, h.pool, job_id)
        counts = Counter((task_id, stage) for task_id, stage, _ in calls)
        assert len(counts) == 60 * len(WORK_STAGES)
        assert set(counts.values()) == {1}
        owners = {owner for _, _, owner in calls}
        assert owners <= {s.owner_id for s in supervisors}
        assert len(owners) > 1, "the work should be spread over the claimers"
        stages = await h.pool.fetch("SELECT stage, progress, attempts, lease_owner FROM language_tasks")
        assert {(r["stage"], r["progress"], r["attempts"], r["lease_owner"]) for r in stages} == {
            ("complete", 1.0, 1, None)}
        assert set(await h.pool.fetchval("SELECT array_agg(DISTINCT status) FROM jobs")) == {"complete"}


async def test_expired_lease_is_reclaimed_and_resumes_at_the_unfinished_stage(settings: Settings) -> None:
    calls: list[tuple[uuid.UUID, str, str]] = []
    async with harness(settings) as h:
        job_id = await h.new_job(["es"])
        # A process claims the task, finishes stt, starts translating... and dies (no heartbeat).
        [claimed] = await tasks.claim(h.pool, "dead-process", 1, lease_seconds=0.5)
        assert await tasks.enter_stage(Database.on(h.pool), claimed.id, "dead-process", "stt")
        assert await tasks.advance(Database.on(h.pool), claimed.id, "dead-process", "stt") == "translating"
        await h.supervisor(recording(calls), poll_interval_seconds=0.3)
        listener = await h.listener()
        history = await wait_done(listener, h.pool, job_id)
        assert [stage for _, stage, _ in calls] == ["translating", "dubbing", "mixing", "exporting"]
        row = await h.pool.fetchrow("SELECT stage, attempts, claims FROM language_tasks WHERE id = $1", claimed.id)
        # Taken twice, but the process dying is not the task's failure: still its first attempt.
        assert (row["stage"], row["attempts"], row["claims"]) == ("complete", 1, 2)
        assert history[-1].kind == "done" and history[-1].data == {"status": "complete"}
        # The dead process cannot write any more: its lease is gone.
        assert not await tasks.report_progress(Database.on(h.pool), claimed.id, "dead-process", "translating", 0.9)


async def test_a_lease_of_a_process_that_died_after_start_up_is_freed_on_the_next_sweep(settings: Settings) -> None:
    """A neighbour on this host is killed -9 after this worker started: its lease (long) is freed by the next
    sweep, even while its process is still a zombie, not when the lease runs out."""
    calls: list[tuple[uuid.UUID, str, str]] = []
    neighbour = subprocess.Popen(["sleep", "600"])
    try:
        async with harness(settings) as h:
            job_id = await new_job(h.pool, ["es"])
            dead_owner = f"{socket.gethostname()}:{neighbour.pid}:{owners._started(neighbour.pid)}-0badc0de"
            [claimed] = await tasks.claim(h.pool, dead_owner, 1, lease_seconds=600)
            await h.supervisor(recording(calls), poll_interval_seconds=0.3)  # the neighbour is alive at start-up
            os.kill(neighbour.pid, signal.SIGKILL)  # and not reaped: a zombie until the finally below
            history = await wait_done(await h.listener(), h.pool, job_id, timeout=20)
            assert history[-1].kind == "done" and history[-1].data == {"status": "complete"}
            assert {task for task, _, _ in calls} == {claimed.id}
    finally:
        neighbour.kill()
        neighbour.wait()


async def test_notify_wakes_the_supervisor_long_before_the_poll(settings: Settings) -> None:
    started: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def stt(ctx: StageContext) -> None:
        if not started.done():
            started.set_result(time.perf_counter())

    async with harness(settings) as h:
        supervisor = await h.supervisor({"stt": stt, **recording([], WORK_STAGES[1:])}, poll_interval_seconds=60)
        await asyncio.wait_for(supervisor.listener.connected.wait(), 10)
        # Let the supervisor go idle: its first claim finds nothing and it waits.
        await asyncio.wait_for(_idle(supervisor), 10)
        enqueued = time.perf_counter()
        await h.new_job(["es"])
        latency = await asyncio.wait_for(started, 10) - enqueued
        print(f"LISTEN wake-up latency: {latency * 1000:.1f} ms")
        assert latency < 2.0  # the poll interval is 60 s: only the NOTIFY can explain this


async def _idle(supervisor: Runner) -> None:
    while not supervisor.running:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)


async def test_a_failing_language_does_not_stop_the_others(settings: Settings) -> None:
    async def dubbing(ctx: StageContext) -> None:
        if ctx.task.target_language == "fr":
            raise StageError("voice_unavailable", "No voice for French")

    async with harness(settings) as h:
        job_id = await h.new_job(["es", "fr"])
        await h.supervisor({**recording([]), "dubbing": dubbing})
        history = await wait_done(await h.listener(), h.pool, job_id)
        rows = {r["target_language"]: r for r in await h.pool.fetch(
            "SELECT target_language, stage, error_code, error_message FROM language_tasks")}
        assert rows["es"]["stage"] == "complete"
        assert (rows["fr"]["stage"], rows["fr"]["error_code"]) == ("failed", "voice_unavailable")
        failed = [e for e in history if e.kind == "failed"]
        assert len(failed) == 1 and failed[0].data["error"]["code"] == "voice_unavailable"
        assert history[-1].data == {"status": "partial"}


async def test_crashes_are_retried_then_given_up(settings: Settings) -> None:
    attempts: Counter[str] = Counter()

    async def mixing(ctx: StageContext) -> None:
        attempts[ctx.task.target_language] += 1
        if ctx.task.target_language == "de" or attempts["es"] == 1:
            raise RuntimeError("engine segfault")

    async with harness(settings) as h:
        job_id = await h.new_job(["es", "de"])
        await h.supervisor({**recording([]), "mixing": mixing}, max_attempts=3)
        await wait_done(await h.listener(), h.pool, job_id)
        rows = {r["target_language"]: r for r in await h.pool.fetch(
            "SELECT target_language, stage, attempts, error_code FROM language_tasks")}
        assert (rows["es"]["stage"], rows["es"]["attempts"]) == ("complete", 2)
        assert (rows["de"]["stage"], rows["de"]["attempts"], rows["de"]["error_code"]) == (
            "failed", 3, "internal_error")
        assert attempts == {"es": 2, "de": 3}


async def test_cancel_stops_a_running_stage(settings: Settings) -> None:
    entered = asyncio.Event()
    stopped = asyncio.Event()

    async def translating(ctx: StageContext) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # a stage that would run for ever
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with harness(settings) as h:
        job_id = await h.new_job(["es"], owner="u9")
        # A long lease: the stage must stop on the cancellation's notification, not at the next heartbeat.
        await h.supervisor({**recording([]), "translating": translating}, lease_seconds=300)
        await asyncio.wait_for(entered.wait(), 10)
        assert await jobs.cancel(h.pool, "u9", job_id)
        await asyncio.wait_for(stopped.wait(), 10)
        row = await h.pool.fetchrow("SELECT stage, lease_owner, finished_at FROM language_tasks")
        assert row["stage"] == "cancelled" and row["lease_owner"] is None and row["finished_at"] is not None
        assert await h.pool.fetchval("SELECT status FROM jobs") == "cancelled"
        kinds = [e.kind for e in await events.since(h.pool, job_id, 0)]
        assert kinds[-1] == "done"


async def test_a_running_task_shows_when_it_was_leased_and_last_heard_from(settings: Settings) -> None:
    """What operators read in `ops` views, whichever backend delivered the task."""
    entered = asyncio.Event()

    async def translating(ctx: StageContext) -> None:
        entered.set()
        await asyncio.Event().wait()

    async with harness(settings) as h:
        await h.new_job(["es"])
        await h.supervisor({**recording([]), "translating": translating}, lease_seconds=300)
        await asyncio.wait_for(entered.wait(), 10)
        row = await h.pool.fetchrow("SELECT leased_at, heartbeat_at, lease_owner, now() AS now FROM language_tasks")
        assert row["lease_owner"] is not None
        assert row["leased_at"] is not None and row["heartbeat_at"] is not None
        assert row["leased_at"] <= row["now"] and row["heartbeat_at"] <= row["now"]


async def test_recovers_when_its_database_connections_are_cut(settings: Settings) -> None:
    calls: list[tuple[uuid.UUID, str, str]] = []
    async with harness(settings) as h:
        supervisor = await h.supervisor(recording(calls), poll_interval_seconds=0.5)
        first = await h.new_job(["es"])
        await wait_done(supervisor.listener, h.pool, first)
        # Cut every other connection to this database: the listener's and the supervisor's pool.
        await h.pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        await asyncio.wait_for(_reconnected(supervisor.listener), 15)
        second = await h.new_job(["fr"])
        history = await wait_done(supervisor.listener, h.pool, second)
        assert history[-1].data == {"status": "complete"}
        await asyncio.wait_for(_until_running(supervisor), 10)


async def _until_running(supervisor: Runner) -> None:
    while not supervisor.running:
        await asyncio.sleep(0.05)


async def _reconnected(listener: Listener) -> None:
    while listener.connected.is_set():
        await asyncio.sleep(0.01)
    await listener.connected.wait()


@pytest.mark.parametrize("lease", [0.6])
async def test_heartbeat_keeps_a_long_stage_leased(settings: Settings, lease: float, tmp_path: Path) -> None:
    """A stage running for several lease lengths is not taken over by another claimer."""
    calls: list[tuple[uuid.UUID, str, str]] = []

    async def slow(ctx: StageContext) -> None:
        calls.append((ctx.task.id, ctx.stage, ctx.lease_owner))
        await asyncio.sleep(lease * 4)

    async with harness(settings) as h:
        job_id = await h.new_job(["es"])
        await h.supervisor({**recording(calls), "stt": slow}, lease_seconds=lease, poll_interval_seconds=0.1)
        await h.supervisor({**recording(calls), "stt": slow}, lease_seconds=lease, poll_interval_seconds=0.1)
        await wait_done(await h.listener(), h.pool, job_id)
        assert Counter(stage for _, stage, _ in calls) == dict.fromkeys(WORK_STAGES, 1)
