"""One LISTEN connection per process, fanned out to every open event stream and the supervisor.

asyncpg does not reconnect a LISTEN connection by itself and notifications sent while it is down
are lost, so after every (re)connect each subscriber is told to re-read what it missed from
`task_events`, and the supervisor is woken to poll once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from service.db import connection
from service.db.events import EVENTS_CHANNEL, TASKS_CHANNEL, Event
from service.db.outbox import OUTBOX_CHANNEL
from service.domain import EventKind, Stage

log = structlog.get_logger(__name__)

RESYNC = "resync"
END = "end"  # the process is shutting down: streams end, and clients reconnect elsewhere


@dataclass(eq=False)
class Subscription:
    job_id: str
    queue: asyncio.Queue[Event | str] = field(default_factory=asyncio.Queue)


class Listener:
    def __init__(self, url: str) -> None:
        self.url = url
        self.tasks_ready = asyncio.Event()
        self.outbox_ready = asyncio.Event()  # a webhook or meter event was written (sql/036): deliver it
        self.connected = asyncio.Event()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.ending = False
        # Told which tasks were just cancelled, so their runners stop now rather than at their next heartbeat:
        # (job, its cancelled tasks); (job, None) when the notification was too big to name them; (None, None)
        # after a reconnect, when any may have been.
        self.cancelled_watchers: list[Callable[[str | None, set[str] | None], None]] = []

    # -- subscriptions ---------------------------------------------------------------------------
    def subscribe(self, job_id: str) -> Subscription:
        sub = Subscription(job_id)
        self._subscriptions.setdefault(job_id, set()).add(sub)
        return sub

    def end_streams(self) -> None:
        """Tell every open stream to end (shutdown); streams opened from now on end at once."""
        self.ending = True
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.queue.put_nowait(END)

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscriptions[sub.job_id]

    @property
    def open_streams(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())

    def _on_events(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        message = json.loads(payload)
        self._tell_cancelled(message["job_id"], None if message.get("refetch") else {
            e["task_id"] for e in message["events"]
            if e["kind"] == EventKind.STAGE and e["stage"] == Stage.CANCELLED and e.get("task_id")})
        subs = self._subscriptions.get(message["job_id"])
        if not subs:
            return
        items: list[Event | str] = (
            [RESYNC] if message.get("refetch") else [Event.from_json(e) for e in message["events"]]
        )
        for sub in subs:
            for item in items:
                sub.queue.put_nowait(item)

    def _on_tasks(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.tasks_ready.set()

    def _on_outbox(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.outbox_ready.set()

    def _resync_all(self) -> None:
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.queue.put_nowait(RESYNC)
        self.tasks_ready.set()
        self.outbox_ready.set()
        self._tell_cancelled(None, None)

    def _tell_cancelled(self, job_id: str | None, task_ids: set[str] | None) -> None:
        if task_ids is None or task_ids:
            for watcher in self.cancelled_watchers:
                watcher(job_id, task_ids)

    # -- connection --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="listener")
        await asyncio.wait_for(self.connected.wait(), timeout=30)

    async def stop(self) -> None:
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def _run(self) -> None:
        delay = 0.2
        while True:
            lost = asyncio.Event()
            try:
                conn = await connection.connect(self.url)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(EVENTS_CHANNEL, self._on_events)
                await conn.add_listener(TASKS_CHANNEL, self._on_tasks)
                await conn.add_listener(OUTBOX_CHANNEL, self._on_outbox)
                self._conn = conn
                self.connected.set()
                self._resync_all()
                log.info("listener.connected")
                delay = 0.2
                await lost.wait()
                log.warning("listener.lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listener.connect_failed", error=str(exc), retry_in=round(delay, 2))
            self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
            delay = min(delay * 2, 10.0)
