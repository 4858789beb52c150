"""The Redis side of QUEUE_BACKEND=dramatiq: Dramatiq's RedisBroker and message format, used from our event loop.

A message is a Dramatiq message for the actor `run_task` on the queue `dubbing` and carries two ids, the
task's and its job's: never audio, never paths. Enqueue, fetch, ack and requeue are the broker's own
Lua-scripted commands, with its per-worker sets of fetched-but-unacked messages and its heartbeats, so
Redis itself gives back what a dead worker had fetched. redis-py blocks, so every call runs in a small
thread pool of this object's own.

The broker has no middleware: no Retries (a task's retries are its own `attempts` and `run_after` in
PostgreSQL), no TimeLimit (a lease bounds a task, and dubbing an hour takes longer than Dramatiq's ten
minutes), no AgeLimit (a message is only a nudge: the task row says whether there is anything to do).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from service.errors import QueueUnavailable

log = structlog.get_logger(__name__)

QUEUE = "dubbing"
ACTOR = "run_task"
T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """A fetched message: what it names, and the broker's handle to ack or requeue it."""

    task_id: UUID
    job_id: UUID
    message: Message[Any]


class RedisQueue:
    def __init__(self, url: str, namespace: str = "dramatiq") -> None:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
        self.broker = RedisBroker(client=client, namespace=namespace, middleware=[])  # type: ignore[no-untyped-call]
        self.broker.declare_queue(QUEUE)
        self.namespace = namespace
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="redis")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
        except redis.RedisError as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.broker.client.close()

    # -- sending ------------------------------------------------------------------------------------
    async def send(self, items: list[tuple[UUID, UUID]]) -> str | None:
        """Enqueue `run_task(task_id, job_id)` for each item; returns the Redis server's run_id."""
        return await self._call(self._send, items)

    def _send(self, items: list[tuple[UUID, UUID]]) -> str | None:
        server = self._server_id()
        for task_id, job_id in items:
            self.broker.enqueue(Message(queue_name=QUEUE, actor_name=ACTOR, args=(str(task_id), str(job_id)),
                                        kwargs={}, options={}))
        return server

    def _server_id(self) -> str | None:
        """Redis's run_id: a new one after every restart, so messages sent to the old server are known lost."""
        try:
            return str(self.broker.client.info("server")["run_id"])
        except redis.ResponseError:  # INFO refused (some managed services and proxies)
            return None

    # -- consuming ----------------------------------------------------------------------------------
    async def receive(self) -> Delivery | None:
        """One message or None, at once (the caller paces its polling)."""
        return await self._call(self._receive)

    def _receive(self) -> Delivery | None:
        for data in self.broker.do_fetch(QUEUE, 1):
            if data is None:  # its body is gone (acked meanwhile by a worker Redis thought dead)
                continue
            message = Message.decode(data)
            try:
                task_id, job_id = (uuid.UUID(str(arg)) for arg in message.args)
            except (TypeError, ValueError):
                log.warning("queue.bad_message", message_id=message.message_id, actor=message.actor_name)
                self._ack(message)
                continue
            return Delivery(task_id, job_id, message)
        return None

    async def ack(self, delivery: Delivery) -> None:
        await self._call(self._ack, delivery.message)

    def _ack(self, message: Message[Any]) -> None:
        self.broker.do_ack(QUEUE, message.options["redis_message_id"])

    async def requeue(self, delivery: Delivery) -> None:
        """Put a fetched message back at the end of the queue, for any worker."""
        await self._call(self.broker.do_requeue, QUEUE, delivery.message.options["redis_message_id"])

    # -- looking ------------------------------------------------------------------------------------
    async def waiting(self) -> int:
        """Messages in the queue that no worker has fetched yet."""
        return await self._call(self._waiting)

    def _waiting(self) -> int:
        return int(self.broker.client.llen(f"{self.namespace}:{QUEUE}"))

    async def status(self) -> tuple[str | None, int]:
        """(the server's run_id, messages waiting)."""
        return await self._call(lambda: (self._server_id(), self._waiting()))
