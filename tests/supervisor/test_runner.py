"""service/supervisor/runner.py: one claimed task run by a `TaskRunner` on real PostgreSQL, with stage functions
written here (passed through the registry seam, as the engines' stages are)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.db import events, tasks
from service.db.tasks import ClaimedTask
from service.domain import WORK_STAGES
from service.errors import ErrorCode, StageError
from service.settings import Settings
from service.stages.context import StageContext, StageFn
from service.supervisor.runner import TaskRunner
from tests.support.harness import Calls, Harness, harness, recording

OWNER = "runner-under-test"


@pytest.fixture
async def h(settings: Settings) -> AsyncIterator[Harness]:
    async with harness(settings.with_overrides(retry_base_seconds=20.0, max_attempts=3)) as made:
        yield made


async def claimed(h: Harness, targets: list[str] | None = None) -> ClaimedTask:
    job_id = await h.new_job(targets or ["es"])
    [task] = await tasks.claim(h.pool, OWNER, 1, 60)
    assert task.job_id == job_id
    return task


async def runner(h: Harness, registry: dict[str, StageFn], **overrides: object) -> TaskRunner:
    return TaskRunner(await h.services(**overrides), registry, OWNER)


async def row(h: Harness, task: ClaimedTask) -> dict[str, object]:
    found = await h.pool.fetchrow(
        """SELECT stage, attempts, lease_owner, error_code, error_message,
                  extract(epoch FROM run_after - now()) AS wait FROM language_tasks WHERE id = $1""", task.id)
    assert found is not None
    return dict(found)


async def test_stages_that_succeed_advance_the_task_to_complete(h: Harness) -> None:
    calls: Calls = []

    async def mixing(ctx: StageContext) -> None:
        calls.append((ctx.task.id, ctx.stage, ctx.lease_owner))
        ctx.figures["loudness_lufs"] = -16.0

    task = await claimed(h)
    await (await runner(h, recording(calls, mixing=mixing))).run(task)
    assert [stage for _, stage, _ in calls] == list(WORK_STAGES)
    assert {owner for _, _, owner in calls} == {OWNER}
    state = await row(h, task)
    assert (state["stage"], state["attempts"], state["lease_owner"]) == ("complete", 1, None)
    history = await events.since(h.pool, task.job_id, 0)
    entered = [e.stage for e in history if e.kind == "stage"]
    assert entered == ["queued", *WORK_STAGES, "complete"]
    finished = {e.data["finished_stage"]: e.data for e in history if e.kind == "stage" and e.data}
    assert list(finished) == list(WORK_STAGES)
    assert finished["mixing"]["figures"] == {"audio_seconds": 1.0, "loudness_lufs": -16.0}
    assert history[-1].kind == "done" and history[-1].data == {"status": "complete"}


async def test_a_retryable_failure_gives_the_task_back_with_a_doubling_backoff(h: Harness) -> None:
    async def dubbing(ctx: StageContext) -> None:
        raise StageError(ErrorCode.ENGINE_TIMEOUT, "the voice engine took too long")

    task = await claimed(h)
    await (await runner(h, {**recording([]), "dubbing": dubbing})).run(task)
    first = await row(h, task)
    assert (first["stage"], first["attempts"], first["lease_owner"]) == ("dubbing", 2, None)
    assert first["error_code"] is None  # not failed: retrying
    assert 20 * 0.9 - 1 <= float(first["wait"]) <= 20 * 1.1  # type: ignore[arg-type]
    [retried] = [e for e in await events.since(h.pool, task.job_id, 0) if "retrying_in_seconds" in e.data]
    assert retried.data["error"]["code"] == "engine_timeout"

    await h.pool.execute("UPDATE language_tasks SET run_after = now() WHERE id = $1", task.id)
    [again] = await tasks.claim(h.pool, OWNER, 1, 60)
    assert (again.stage, again.attempts) == ("dubbing", 2)  # from the stage that failed
    await (await runner(h, {**recording([]), "dubbing": dubbing})).run(again)
    second = await row(h, again)
    assert (second["stage"], second["attempts"]) == ("dubbing", 3)
    assert 40 * 0.9 - 1 <= float(second["wait"]) <= 40 * 1.1  # type: ignore[arg-type]


async def test_the_last_attempt_s_retryable_failure_fails_the_task(h: Harness) -> None:
    async def stt(ctx: StageContext) -> None:
        raise RuntimeError("engine segfault")  # a crash: internal_error, retryable

    task = await claimed(h)
    await h.pool.execute("UPDATE language_tasks SET attempts = 3 WHERE id = $1", task.id)
    task = ClaimedTask(**{**task.__dict__, "attempts": 3})
    await (await runner(h, {**recording([]), "stt": stt})).run(task)
    state = await row(h, task)
    assert (state["stage"], state["error_code"]) == ("failed", "internal_error")
    assert state["error_message"] == "The stt stage crashed: RuntimeError"


async def test_a_non_retryable_failure_fails_the_task_with_its_code_at_once(h: Harness) -> None:
    calls: Calls = []

    async def translating(ctx: StageContext) -> None:
        raise StageError(ErrorCode.UNSUPPORTED_LANGUAGE, "No translation into /srv/secret/es")

    task = await claimed(h)
    await (await runner(h, recording(calls, translating=translating))).run(task)
    state = await row(h, task)
    assert (state["stage"], state["attempts"], state["error_code"]) == ("failed", 1, "unsupported_language")
    assert "/srv/secret" not in str(state["error_message"])  # the user never sees where files lie
    assert [stage for _, stage, _ in calls] == ["stt"]  # nothing after the failed stage ran
    [failed] = [e for e in await events.since(h.pool, task.job_id, 0) if e.kind == "failed"]
    assert failed.data["failed_in"] == "translating"


async def test_a_stage_with_no_function_fails_the_task_as_unavailable(h: Harness) -> None:
    task = await claimed(h)
    await (await runner(h, {s: f for s, f in recording([]).items() if s != "mixing"})).run(task)
    assert (await row(h, task))["error_code"] == ErrorCode.STAGE_UNAVAILABLE


async def test_a_task_past_its_attempts_is_failed_without_running(h: Harness) -> None:
    calls: Calls = []
    task = await claimed(h)
    await (await runner(h, recording(calls))).run(ClaimedTask(**{**task.__dict__, "attempts": 4}))
    assert calls == [] and (await row(h, task))["error_code"] == ErrorCode.TOO_MANY_ATTEMPTS


async def test_a_lost_lease_stops_the_running_stage_and_writes_nothing(h: Harness) -> None:
    entered, stopped = asyncio.Event(), asyncio.Event()
    calls: Calls = []

    async def translating(ctx: StageContext) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    task = await claimed(h)
    run = asyncio.create_task((await runner(h, recording(calls, translating=translating), lease_seconds=0.6)).run(task))
    await asyncio.wait_for(entered.wait(), 10)
    # Another process took the task (as after this one's lease ran out): the next heartbeat finds it gone.
    await h.pool.execute("UPDATE language_tasks SET lease_owner = 'another-process' WHERE id = $1", task.id)
    await asyncio.wait_for(run, 10)  # the run ends by itself, quietly
    assert stopped.is_set()
    state = await row(h, task)
    assert (state["stage"], state["lease_owner"], state["error_code"]) == ("translating", "another-process", None)
    assert [stage for _, stage, _ in calls] == ["stt"]


async def test_a_stage_that_finds_its_lease_gone_ends_the_run(h: Harness) -> None:
    calls: Calls = []

    async def dubbing(ctx: StageContext) -> None:
        await h.pool.execute("UPDATE language_tasks SET lease_owner = 'another-process' WHERE id = $1", ctx.task.id)
        await ctx.progress(0.5)  # refused: LeaseLost

    task = await claimed(h)
    await (await runner(h, recording(calls, dubbing=dubbing))).run(task)
    state = await row(h, task)
    assert (state["stage"], state["lease_owner"], state["error_code"]) == ("dubbing", "another-process", None)
    assert "mixing" not in [stage for _, stage, _ in calls]


async def test_a_draining_runner_hands_the_task_back_before_its_next_stage(h: Harness) -> None:
    calls: Calls = []
    task_runner: TaskRunner | None = None

    async def translating(ctx: StageContext) -> None:
        assert task_runner is not None
        task_runner.draining = True

    task = await claimed(h)
    task_runner = await runner(h, recording(calls, translating=translating))
    await task_runner.run(task)
    state = await row(h, task)
    assert (state["stage"], state["attempts"], state["lease_owner"]) == ("dubbing", 1, None)
    assert [stage for _, stage, _ in calls] == ["stt"]
