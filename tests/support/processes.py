"""The processes a test started, found through /proc: to check that nothing of ours outlives a clean stop."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from service.scratch import pid_alive


@contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A DATA_DIR for a service with its embedded PostgreSQL, outside pytest's tmp_path: as root the server runs
    as the `pgserver` user, and pytest resets its own temporary root to 0700 whenever a session starts (another
    session on the machine), locking that user out mid-test."""
    with tempfile.TemporaryDirectory(prefix="dubbing-embedded-") as directory:
        yield Path(directory) / "data"


def session_members(session: int) -> list[int]:
    """Processes in the session `session` leads (everything `dubbing serve` started, except daemons)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line names `path` (the embedded server runs as `postgres -D DIR`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in command and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def gone_within(seconds: float, check: Callable[[], list[int]]) -> list[int]:
    """What `check()` still lists after up to `seconds` (an exited process's last children take a moment)."""
    deadline = time.monotonic() + seconds
    while (left := check()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left
