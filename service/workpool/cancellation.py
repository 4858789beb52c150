"""Stopping work inside a process-pool worker when the task that asked for it is cancelled.

A worker cannot be interrupted from outside, so the asking side (`workpool.cpu_pool.run`) hands it a
token path and creates that file on cancel; the long-running loops in the worker (ffmpeg waits, block
loops over audio, Whisper's segments) call `check()` and stop within a fraction of a second, killing
the ffmpeg process they were waiting on (`audio/ffmpeg.wait`). One call runs in a worker at a time, so the token is a
process global.
"""

from __future__ import annotations

import os

from service.errors import Cancelled

_token: str | None = None


def set_token(path: str | None) -> None:
    global _token
    _token = path


def requested() -> bool:
    return _token is not None and os.path.exists(_token)


def check() -> None:
    if requested():
        raise Cancelled("cancelled")
