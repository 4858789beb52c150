"""`dubbing demo`: its progress board (a live bar per language on a terminal, plain lines otherwise), and
Ctrl-C in the middle of a job leaving nothing of ours running (the service, its embedded database)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
from pathlib import Path

from service.demo import ProgressBoard
from service.scratch import pid_alive
from tests.support import JWT_SECRET, free_port
from tests.support.processes import embedded_data_dir, gone_within, processes_using, session_members

EVENTS = [("es", 0.0, "stt", None), ("ca", 0.0, "stt", None)] + [
    ("es", 0.2 * k / 40, "stt", 30.0 - k * 0.5) for k in range(1, 41)] + [
    ("es", 0.2, "translating", 10.0), ("es", 0.4, "dubbing", 8.0), ("es", 1.0, "complete", None)]


def test_without_a_terminal_the_board_prints_plain_lines_not_one_per_event() -> None:
    out = io.StringIO()  # not a terminal, as when the demo's output goes to a file or a pipe
    with ProgressBoard(["es", "ca"], out=out) as board:
        for language, progress, stage, remaining in EVENTS:
            board.update(language, progress, stage, remaining=remaining)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()  # no cursor movement, no colour
    assert all(line.startswith(("  es: ", "  ca: ")) for line in lines), lines
    assert len(lines) < len(EVENTS) / 3, lines  # 40 small steps inside transcription are a few lines
    assert any("stt" in line and "%" in line and "s left" in line for line in lines), lines
    assert lines[-1].startswith("  es: complete") and "100.0%" in lines[-1] and "left" not in lines[-1]


def test_on_a_terminal_the_board_draws_a_live_bar_per_language() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with ProgressBoard(["es", "ca"], out=out) as board:
        for language, progress, stage, remaining in EVENTS[:10]:
            board.update(language, progress, stage, remaining=remaining)
    drawn = out.getvalue()
    assert "\x1b[" in drawn  # redrawn in place
    assert "es" in drawn and "ca" in drawn and "stt" in drawn and "s left" in drawn


async def test_ctrl_c_during_a_job_leaves_nothing_running(tmp_path: Path) -> None:
    with embedded_data_dir() as data:
        await interrupt_and_check(tmp_path, data)


async def interrupt_and_check(tmp_path: Path, data: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(data), "SUPABASE_JWT_SECRET": JWT_SECRET, "PORT": str(free_port())}
    env.pop("DATABASE_URL", None)  # the embedded database, as `just demo` runs with no configuration
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "demo", "--to", "es", "--out", str(tmp_path / "out"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    assert demo.stdout is not None
    output = b""
    try:
        async with asyncio.timeout(120):
            while b"Job " not in output:  # the job is running
                line = await demo.stdout.readline()
                assert line, output.decode()
                output += line
        postmaster = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        output += await asyncio.wait_for(demo.stdout.read(), 60)
        assert await asyncio.wait_for(demo.wait(), 60) == 130, output.decode()
        assert not pid_alive(postmaster), "the embedded PostgreSQL outlived the demo"
        assert await gone_within(5, lambda: processes_using(data)) == []
        assert await gone_within(5, lambda: session_members(demo.pid)) == []
    finally:
        for pid in {*processes_using(data), *session_members(demo.pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
