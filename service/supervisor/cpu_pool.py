"""The supervisor's process pool for CPU-bound work, created once and warmed at start-up."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor


def _initialize_worker(numba_cache_dir: str) -> None:
    # librosa compiles with numba on first use; a persistent cache makes that a one-time cost.
    os.environ.setdefault("NUMBA_CACHE_DIR", numba_cache_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def warm_imports() -> int:
    """Import the heavy libraries in a worker so the first real task does not pay for it."""
    import numpy  # noqa: F401
    import soundfile  # noqa: F401

    return os.getpid()


def create(workers: int, numba_cache_dir: str) -> ProcessPoolExecutor:
    # forkserver: workers do not inherit the event loop, sockets or threads of this process.
    context = multiprocessing.get_context("forkserver")
    os.makedirs(numba_cache_dir, exist_ok=True)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_initialize_worker, initargs=(numba_cache_dir,)
    )


async def warm(executor: Executor, workers: int, warmers: list[Callable[[], object]]) -> set[int]:
    """Run every warmer on every worker (submitted `workers` times at once so each worker starts)."""
    loop = asyncio.get_running_loop()
    pids: set[int] = set()
    for warmer in [warm_imports, *warmers]:
        results = await asyncio.gather(*(loop.run_in_executor(executor, warmer) for _ in range(workers)))
        pids.update(r for r in results if isinstance(r, int))
    return pids
