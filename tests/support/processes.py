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


def proc_files(name: str) -> Iterator[tuple[int, bytes]]:
    """(pid, the content of /proc/PID/`name`) of every process that still exists as it is read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / name).read_bytes()
        except OSError:
            continue


def session_members(session: int) -> list[int]:
    """Processes in the session `session` leads (everything `dubbing serve` started, except daemons)."""
    found = []
    for pid, raw in proc_files("stat"):
        stat = raw.decode(errors="replace")
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(pid)
    return found


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line names `path` (the embedded server runs as `postgres -D DIR`)."""
    return [pid for pid, raw in proc_files("cmdline")
            if str(path) in raw.replace(b"\0", b" ").decode(errors="replace") and pid_alive(pid)]


async def gone_within(seconds: float, check: Callable[[], list[int]]) -> list[int]:
    """What `check()` still lists after up to `seconds` (an exited process's last children take a moment)."""
    deadline = time.monotonic() + seconds
    while (left := check()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left
