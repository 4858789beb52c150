"""`dubbing serve` with its defaults (no DATABASE_URL: the embedded PostgreSQL it starts in DATA_DIR) leaves
nothing running after a clean stop: not its CPU workers, not the database server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from service.scratch import pid_alive
from tests.support import served


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


async def gone_within(seconds: float, check: object) -> list[int]:
    """What `check()` still lists after up to `seconds` (an exited process's last children take a moment)."""
    deadline = time.monotonic() + seconds
    while (left := check()) and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.1)
    return left  # type: ignore[no-any-return]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
async def test_a_clean_stop_leaves_no_process_behind(tmp_path: Path, stop: signal.Signals) -> None:
    data = tmp_path / "data"
    async with served(data, None) as svc:  # embedded database, as `just serve` runs with no DATABASE_URL
        postmaster = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        assert pid_alive(postmaster)
        session = svc.process.pid
        assert len(session_members(session)) > 1  # the service and its workers
        if stop is signal.SIGINT:  # Ctrl-C: the terminal signals the whole foreground group
            os.killpg(session, stop)
        else:
            svc.process.send_signal(stop)
        await asyncio.wait_for(svc.process.wait(), 60)
    try:
        assert not pid_alive(postmaster), "the embedded PostgreSQL outlived the service"
        assert await gone_within(5, lambda: processes_using(data)) == []
        assert await gone_within(5, lambda: session_members(session)) == []
    finally:  # a failed run leaves nothing running either
        for pid in {postmaster, *processes_using(data), *session_members(session)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
