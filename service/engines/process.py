"""One way to run an engine's subprocess without blocking the event loop or leaking it on cancel.

The child is started and waited for in a small thread pool with `subprocess.Popen`, never with
`asyncio.create_subprocess_exec`: under uvloop (what `dubbing serve` runs on) asyncio's pipes are
socket pairs, and programs that reopen `/dev/stdin` or `/dev/stdout` by name (the `apertium` wrapper
script does) cannot open a socket that way, print their usage and exit 0 with no output. Plain OS
pipes behave the same under every event loop, and forking in a thread keeps the 10-20 ms a spawn
costs off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.errors import EngineError, ErrorCode

# Engine subprocesses wait on I/O, not the CPU: more threads than cores is right.
_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="engine-subprocess")


@dataclass
class _Child:
    """The running process, shared between the waiting thread and the cancelling coroutine."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    proc: subprocess.Popen[bytes] | None = None
    abandoned: bool = False

    def kill(self) -> None:
        with self.lock:
            self.abandoned = True
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()


def _run_blocking(args: list[str], stdin: bytes | None, time_limit: float, child: _Child) -> tuple[int, bytes, bytes]:
    with child.lock:
        if child.abandoned:
            raise asyncio.CancelledError()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise EngineError(ErrorCode.ENGINE_MISSING, f"{args[0]} is not installed") from exc
        child.proc = proc
    try:
        out, err = proc.communicate(stdin, timeout=time_limit)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise EngineError(ErrorCode.ENGINE_TIMEOUT, f"{args[0]} took longer than {time_limit:g}s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


async def run(args: list[str], stdin: bytes | None = None, time_limit: float = 120.0) -> bytes:
    """Run `args`, feed `stdin`, return stdout; map every failure to an EngineError."""
    child = _Child()
    waiting = asyncio.get_running_loop().run_in_executor(_THREADS, _run_blocking, args, stdin, time_limit, child)
    try:
        code, out, err = await asyncio.shield(waiting)
    except asyncio.CancelledError:
        child.kill()  # never leave the child behind: kill it, then let its thread finish
        with contextlib.suppress(BaseException):
            await waiting
        raise
    if code != 0:
        detail = err.decode("utf-8", "replace").strip()[-500:]
        raise EngineError(ErrorCode.ENGINE_FAILED, f"{args[0]} exited {code}: {detail}")
    return out
