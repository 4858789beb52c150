"""Who holds a lease: `host:pid:started-nonce` of the process, so a process can tell its host's dead ones.

`started` is the process's start time (clock ticks since boot, from /proc), which tells a dead process
from a live one that got its pid later (a container's pid 1 after a restart).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

import asyncpg
import structlog

from service.db import tasks
from service.scratch import pid_alive

log = structlog.get_logger(__name__)


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where /proc cannot tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}-{uuid.uuid4().hex[:8]}"


def is_dead_local(owner: str) -> bool:
    """An owner on this host whose process is gone (or whose pid now belongs to a newer process)."""
    host, _, rest = owner.partition(":")
    pid_text, _, tail = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if not pid_alive(pid):
        return True
    started = tail.split("-", 1)[0]
    return bool(started) and started != _started(pid)


async def free_dead_local_leases(pool: asyncpg.Pool) -> list[str]:
    """Expire the leases of this host's dead processes; returns their owner ids."""
    held = await tasks.owners_holding_leases(pool, f"{socket.gethostname()}:")
    dead = [owner for owner in held if is_dead_local(owner)]
    if dead:
        await tasks.expire_leases(pool, dead)
    return dead


async def free_dead(pool: asyncpg.Pool, event: str) -> None:
    """At start-up and on every sweep, so the tasks of this host's dead processes resume at once, not when their
    lease runs out (logged as `event`): a process restarted right after a `kill -9` finds its predecessor still
    a zombie for a moment, and a worker killed while its neighbour runs on leaves leases only a sweep sees.
    A database that is down now is waited for by the loops that follow: a failure here is passed over."""
    with contextlib.suppress(Exception):
        freed = await free_dead_local_leases(pool)
        if freed:
            log.info(event, owners=freed)
