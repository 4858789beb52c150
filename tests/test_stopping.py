"""`dubbing serve` with its defaults (no DATABASE_URL: the embedded PostgreSQL it starts in DATA_DIR) leaves
nothing running after a clean stop: not its CPU workers, not the database server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from service.scratch import pid_alive
from tests.support import served
from tests.support.processes import embedded_data_dir, gone_within, processes_using, session_members


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
async def test_a_clean_stop_leaves_no_process_behind(stop: signal.Signals) -> None:
    with embedded_data_dir() as data:
        await stop_and_check(data, stop)


async def stop_and_check(data: Path, stop: signal.Signals) -> None:
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
