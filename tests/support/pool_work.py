"""Work for process-pool tests: module-level functions, so a pool worker can import them by name."""

from __future__ import annotations

import os
import time
from pathlib import Path

from service.errors import AudioError, ErrorCode, StorageError
from service.workpool import cancellation


def pid() -> int:
    return os.getpid()


def add(a: int, b: int) -> int:
    return a + b


def fail_with_audio_error(message: str) -> None:
    raise AudioError(ErrorCode.FFMPEG_FAILED, message)


def fail_with_storage_error() -> None:
    raise StorageError(404, ErrorCode.OBJECT_NOT_FOUND, "no such object")


def loop_until_cancelled(started: str, stopped: str, limit_seconds: float) -> str:
    """What the pipeline's long loops do: work in small steps, checking the cancellation token between them.
    Touches `started` once running and `stopped` when told to stop."""
    Path(started).touch()
    deadline = time.monotonic() + limit_seconds
    try:
        while time.monotonic() < deadline:
            cancellation.check()
            time.sleep(0.01)
    except BaseException:
        Path(stopped).touch()
        raise
    return "ran to the end"
