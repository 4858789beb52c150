"""The supervisor's process pool for CPU-bound work, created once and warmed at start-up.

`run` is how the service sends work to it: the call can be cancelled like any coroutine, and the
worker then stops what it was doing (see `service.workpool.cancellation`) instead of keeping a core busy for
a result nobody will read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import select
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from service import scratch
from service.workpool import cancellation, progress

P = ParamSpec("P")
T = TypeVar("T")

_TOKENS = Path(tempfile.gettempdir()) / f"dubbing-cancel-{os.getuid()}"
# How long a cancelled call may take to notice before its result is abandoned.
_STOP_WAIT_SECONDS = 10.0


# Pool workers (and the ffmpeg processes they start, which inherit it) run at this lower CPU priority: when
# the cores are full of dubbing work, the event loop answering HTTP requests and progress streams still gets
# a core the moment it needs one. With nothing else to run, the workers have the cores all the same.
WORKER_NICENESS = 10


def _initialize_worker(numba_cache_dir: str, service_pid: int) -> None:
    # librosa compiles with numba on first use; a persistent cache makes that a one-time cost.
    os.environ.setdefault("NUMBA_CACHE_DIR", numba_cache_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.nice(WORKER_NICENESS)
    threading.Thread(target=_exit_with, args=(service_pid,), name="exit-with-service", daemon=True).start()


def _exit_with(service_pid: int) -> None:
    """End this worker when the service process ends, however it ends.

    Workers are the forkserver's children, not the service's: after a `kill -9` (or the OOM killer) of the
    service they and the forkserver would otherwise live on, each holding its model and buffers, for ever.
    """
    try:
        process = os.pidfd_open(service_pid)  # readable once the process has exited
    except (AttributeError, OSError):  # not Linux 5.3+: look every second
        while scratch.pid_alive(service_pid):
            time.sleep(1.0)
    else:
        select.select([process], [], [])
    os._exit(1)


def warm_imports() -> int:
    """Import the heavy libraries in a worker so the first real task does not pay for it."""
    import numpy  # noqa: F401
    import soundfile  # noqa: F401

    return os.getpid()


def _tokens_dir() -> Path:
    """The folder of cancellation tokens and progress pipes: private to this user (0700, ours, not a link),
    so another local user cannot plant a link there and have a worker write through it."""
    _TOKENS.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = _TOKENS.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{_TOKENS} is not a folder of this user's")
    if info.st_mode & 0o077:
        _TOKENS.chmod(0o700)
    return _TOKENS


def create(workers: int, numba_cache_dir: str) -> ProcessPoolExecutor:
    # forkserver: workers do not inherit the event loop, sockets or threads of this process.
    context = multiprocessing.get_context("forkserver")
    os.makedirs(numba_cache_dir, exist_ok=True)
    _tokens_dir()
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_initialize_worker,
        initargs=(numba_cache_dir, os.getpid()),
    )


async def close(executor: ProcessPoolExecutor, wait_seconds: float = _STOP_WAIT_SECONDS) -> None:
    """Stop the pool at shutdown: queued calls are dropped, running ones (already told to stop by their
    cancelled tasks) get `wait_seconds` to return, and the workers exit cleanly, so their semaphores and
    queues are released instead of reported as leaked; workers that still run after that are killed."""
    try:
        await asyncio.wait_for(asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True), wait_seconds)
    except TimeoutError:
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()


async def warm(executor: Executor, workers: int, warmers: list[Callable[[], object]]) -> set[int]:
    """Run every warmer on every worker (submitted `workers` times at once so each worker starts)."""
    loop = asyncio.get_running_loop()
    pids: set[int] = set()
    for warmer in [warm_imports, *warmers]:
        results = await asyncio.gather(*(loop.run_in_executor(executor, warmer) for _ in range(workers)))
        pids.update(r for r in results if isinstance(r, int))
    return pids


def _call(token: str, fn: Callable[..., T], *args: Any) -> T:
    cancellation.set_token(token)
    progress.set_channel(progress.channel_of(token))
    try:
        return fn(*args)
    finally:
        cancellation.set_token(None)
        progress.set_channel(None)
        _give_back_memory()


def _give_back_memory() -> None:
    """Return the heap's free pages to the system after a call.

    glibc keeps what a call freed (an hour's transcription left a worker ~150 MiB bigger than a 5-minute one)
    for reuse, and long-lived workers then sit on their largest call's memory; `malloc_trim` hands it back.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


_LIBC = _libc()


_in_flight = 0  # calls `run` sent and that have not returned: /metrics derives the pool's queue from it


def calls_in_flight() -> int:
    return _in_flight


async def run(executor: Executor, fn: Callable[P, T], *args: P.args, **_: P.kwargs) -> T:
    """`fn(*args)` in the pool; cancelling this call stops the worker's work too."""
    return await _run(executor, None, fn, *args)


async def run_reporting(executor: Executor, on_progress: Callable[[float], None], fn: Callable[..., T],
                        *args: Any) -> T:
    """`run`, with `on_progress(fraction)` called on the event loop for each `progress.report` of the worker."""
    return await _run(executor, on_progress, fn, *args)


async def _run(executor: Executor, on_progress: Callable[[float], None] | None, fn: Callable[..., T],
               *args: Any) -> T:
    global _in_flight
    token = _tokens_dir() / f"{os.getpid()}-{uuid.uuid4().hex}"
    listening: contextlib.AbstractContextManager[None] = (
        progress.listening(progress.channel_of(str(token)), on_progress) if on_progress else contextlib.nullcontext())
    with listening:
        future = asyncio.get_running_loop().run_in_executor(executor, _call, str(token), fn, *args)
        _in_flight += 1
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            token.touch()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(future, _STOP_WAIT_SECONDS)
            raise
        finally:
            _in_flight -= 1
            token.unlink(missing_ok=True)
