"""service/workpool/cpu_pool.py: a real forkserver pool (as `dubbing serve` makes it) running the functions of
tests/support/pool_work.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from service.errors import AudioError, ErrorCode, StorageError
from service.workpool import cpu_pool
from tests.support import pool_work


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessPoolExecutor]:
    pool = cpu_pool.create(1, str(tmp_path_factory.mktemp("numba")))  # one worker: a stuck call would block all
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def wait_for_file(path: Path, timeout: float = 30) -> None:
    """Wait until the worker says it has got there (it creates `path`)."""
    async def poll() -> None:
        while not path.exists():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_work_runs_in_another_process_and_returns_its_result(executor: ProcessPoolExecutor) -> None:
    worker = await cpu_pool.run(executor, pool_work.pid)
    assert worker != os.getpid()
    assert await cpu_pool.run(executor, pool_work.add, 2, 3) == 5
    assert cpu_pool.calls_in_flight() == 0


async def test_warming_starts_every_worker(executor: ProcessPoolExecutor) -> None:
    pids = await cpu_pool.warm(executor, 1, [pool_work.pid])
    assert len(pids) == 1 and os.getpid() not in pids


async def test_a_cancelled_call_stops_the_worker_s_work(executor: ProcessPoolExecutor, tmp_path: Path) -> None:
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    call = asyncio.create_task(cpu_pool.run(executor, pool_work.loop_until_cancelled, str(started), str(stopped), 60))
    await wait_for_file(started)
    assert cpu_pool.calls_in_flight() == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert stopped.exists()  # the worker stopped its loop before the cancelled call returned
    assert cpu_pool.calls_in_flight() == 0
    assert list(Path(cpu_pool._TOKENS).glob(f"{os.getpid()}-*")) == []  # no token left behind
    # The only worker is free again at once (its loop would have run for a minute).
    assert await asyncio.wait_for(cpu_pool.run(executor, pool_work.add, 1, 1), 10) == 2


async def test_an_uncancelled_call_is_not_stopped(executor: ProcessPoolExecutor, tmp_path: Path) -> None:
    result = await cpu_pool.run(executor, pool_work.loop_until_cancelled,
                                str(tmp_path / "started"), str(tmp_path / "stopped"), 0.1)
    assert result == "ran to the end" and not (tmp_path / "stopped").exists()


async def test_errors_cross_the_process_boundary_with_their_code(executor: ProcessPoolExecutor) -> None:
    with pytest.raises(AudioError) as audio:
        await cpu_pool.run(executor, pool_work.fail_with_audio_error, "ffmpeg exited 1")
    assert (audio.value.code, audio.value.message, audio.value.retryable) == (
        ErrorCode.FFMPEG_FAILED, "ffmpeg exited 1", True)
    with pytest.raises(StorageError) as storage:
        await cpu_pool.run(executor, pool_work.fail_with_storage_error)
    assert (storage.value.code, storage.value.status, storage.value.retryable) == (
        ErrorCode.OBJECT_NOT_FOUND, 404, False)
