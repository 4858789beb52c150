"""Telling this host's dead processes from live ones, the way a restarted worker frees their leases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from service.scratch import pid_alive
from service.supervisor import owners


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2:][:1]


def owner_of(pid: int) -> str:
    """The lease-owner id the process `pid` would have had (owners.new_owner_id, for another pid)."""
    return f"{socket.gethostname()}:{pid}:{owners._started(pid)}-0badc0de"


def test_a_killed_child_not_yet_reaped_counts_as_dead() -> None:
    child = subprocess.Popen(["sleep", "600"])
    try:
        owner = owner_of(child.pid)
        assert pid_alive(child.pid) and not owners.is_dead_local(owner)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z":  # killed, and nobody has reaped it: a zombie, as after a kill -9
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        assert not pid_alive(child.pid)
        assert owners.is_dead_local(owner)
    finally:
        child.kill()
        child.wait()


def test_this_process_counts_as_alive() -> None:
    assert pid_alive(os.getpid())
    assert not owners.is_dead_local(owners.new_owner_id())
