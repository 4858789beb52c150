"""How far a call in a pool worker has got, told to the event loop that waits for it.

A transcription or a mix runs for many seconds inside one worker call; without word from it the stage's
progress sits still. The asking side (`cpu_pool.run_reporting`) makes a named pipe beside the call's
cancellation token and reads it from the event loop (`listening`: no polling, no thread); the long loops in
the worker (Whisper's segments, the voice track's blocks, the mix's passes) call `report(fraction)`, which
writes a line to it at most every REPORT_SECONDS and never blocks: a report nobody reads is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator

REPORT_SECONDS = 0.5  # how often a worker's small steps are written; the stage throttles its events itself
STEP = 0.05


class _Channel(threading.local):
    path: str | None = None
    fd: int | None = None
    last: float = 0.0  # when the last report was written
    value: float = 0.0  # and what it said


_channel = _Channel()  # per thread: a thread pool (tests) runs several calls in one process


def channel_of(token: str) -> str:
    """The pipe's path for the call whose cancellation token is `token`."""
    return f"{token}.progress"


def set_channel(path: str | None) -> None:
    """Worker side, around each call: where this call's reports go (None: nowhere)."""
    if _channel.fd is not None:
        with contextlib.suppress(OSError):
            os.close(_channel.fd)
    _channel.path, _channel.fd, _channel.last, _channel.value = path, None, 0.0, 0.0


def report(fraction: float) -> None:
    """Worker side: the call is `fraction` (0..1) done. Cheap enough to call in any loop: written when
    REPORT_SECONDS have passed or it moved by STEP (the end of one long pass before the next)."""
    if _channel.path is None:
        return
    now, fraction = time.monotonic(), min(max(fraction, 0.0), 1.0)
    if now - _channel.last < REPORT_SECONDS and fraction - _channel.value < STEP:
        return
    _channel.last, _channel.value = now, fraction
    try:
        if _channel.fd is None:
            _channel.fd = os.open(_channel.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        os.write(_channel.fd, f"{fraction:.4f}\n".encode())
    except BlockingIOError:  # the reader is behind: this report is dropped, a later one says more
        pass
    except OSError as exc:  # no pipe (nobody asked for reports) or nobody reads it any more: stop trying
        if exc.errno not in (errno.ENOENT, errno.ENXIO, errno.EPIPE):
            raise
        set_channel(None)


@contextlib.contextmanager
def listening(path: str, on_progress: Callable[[float], None]) -> Iterator[None]:
    """Asking side, on the event loop: call `on_progress(fraction)` for each report written to `path`."""
    loop = asyncio.get_running_loop()
    os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    pending = b""
    watching = True

    def readable() -> None:
        nonlocal pending, watching
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:  # the worker closed its end (the call is over): stop watching, or EOF would wake us forever
            loop.remove_reader(fd)
            watching = False
            return
        *lines, pending = (pending + data).split(b"\n")
        values = [float(line) for line in lines if line.strip()]
        if values:
            on_progress(values[-1])

    loop.add_reader(fd, readable)
    try:
        yield
    finally:
        if watching:
            loop.remove_reader(fd)
            readable()  # what the worker wrote just before it returned
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
