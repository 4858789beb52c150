"""QUEUE_BACKEND=dramatiq: run the tasks that messages on Redis name, with the supervisor's own runner.

The consumer is a loop on this process's event loop over Dramatiq's Redis broker (not Dramatiq's Worker
threads): the stages need the process's asyncpg pool, listener, process pool and semaphores, all on one
loop. It fetches one message at a time and only for a free task slot, so no message waits in a busy
worker while another is idle. A message names a task; the worker claims a task in PostgreSQL (the
same lease and the same fair-share choice as the supervisor's claim: the named one unless another user's
turn comes first, which then inherits the taken task's message, see `dispatches.claim`), acks the message,
and runs the task with `TaskRunner`, which
writes its stages, events and NOTIFYs exactly as under the supervisor. From the claim on, the lease is
the task's guarantee, not the message: a message for a task that is over, leased by a live worker, not
due yet or cancelled claims nothing and is acked (duplicates do nothing).

Alongside runs the sweep (`Dispatcher.sweep`): every POLL_INTERVAL_SECONDS, and when a retry comes due,
it frees the leases of this host's dead processes and sends a message for every task that needs one: lease
ran out or was freed (its worker died), released for a retry, handed back, lost with a restarted Redis. Every
worker sweeps; SKIP LOCKED keeps them from sending twice.

Fan-out: a worker that already runs a task of the same job passes a new one over once (back on the
queue, a short pause) when nothing else waits, so an idle worker elsewhere takes it. An idle worker polls
Redis at most every IDLE_POLL_SECONDS, and at once when the NOTIFY that creating a job sends anyway arrives.

SIGTERM drains as the supervisor does: no more fetching, running stages get SHUTDOWN_DRAIN_SECONDS, the
rest is handed back and sent to the queue again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog

from service.db import connection, dispatches
from service.db.tasks import ClaimedTask
from service.errors import QueueUnavailable
from service.queue.dispatcher import Dispatcher
from service.queue.redis_queue import Delivery
from service.supervisor import owners
from service.supervisor.runner import TaskRunner
from service.supervisor.running import RunningTasks, keep_running, wait_set

log = structlog.get_logger(__name__)

IDLE_POLL_SECONDS = 0.1  # the longest an idle worker waits between two looks at the queue
PASS_OVER_SECONDS = 0.25  # after passing a job's second task over: time for an idle worker to take it
PASSED_OVER_MEMORY_SECONDS = 60.0


class DramatiqWorker:
    """Runs the tasks that messages name with `runner` (whose owner id holds their leases)."""

    def __init__(self, runner: TaskRunner, dispatcher: Dispatcher) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.db = runner.db
        self.pool = runner.pool
        self.listener = runner.listener
        self.owner_id = runner.owner_id
        self.dispatcher = dispatcher
        self.queue = dispatcher.queue
        self._running = RunningTasks(runner)
        self._passed_over: dict[uuid.UUID, float] = {}
        self._sweep_soon = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._healthy = {"consumer": False, "sweeper": False}
        self.draining = False
        self._stopping = False  # stop() ends the loops even if a library swallowed their cancellation
        self.restarts = 0

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """For /readyz: both loops alive and the last look at Redis and PostgreSQL answered."""
        return bool(self._loops) and not any(t.done() for t in self._loops) and all(self._healthy.values())

    async def start(self) -> None:
        await owners.free_dead(self.pool, "worker.freed_dead_leases")
        self._loops = [asyncio.create_task(self._keep_going("consumer", self._consume), name="dramatiq-consumer"),
                       asyncio.create_task(self._keep_going("sweeper", self._sweep), name="dramatiq-sweeper")]

    async def drain(self, seconds: float) -> None:
        """Stop fetching; let running stages finish for up to `seconds`, then hand back what is left."""
        self.draining = True
        self.runner.draining = True
        self._running.freed.set()
        self._sweep_soon.set()
        if self._loops:
            await asyncio.wait(self._loops, timeout=5.0)
        if self._running:
            log.info("worker.draining", tasks=len(self._running), seconds=seconds)
        await self._running.finish(seconds)
        await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        handed_back = await self._running.hand_back()
        if handed_back:  # another worker takes them now rather than at its next sweep
            with contextlib.suppress(Exception):
                await self.dispatcher.tasks(handed_back)

    async def _keep_going(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run a loop until it returns (draining); restart it with backoff when it crashes."""

        def crashed(exc: Exception, delay: float) -> None:
            self._healthy[name] = False
            self.restarts += 1
            log.error("worker.loop_crashed", loop=name, error=repr(exc), restart_in=round(delay, 2))

        await keep_running(body, crashed)

    def _outage(self, name: str, exc: BaseException) -> bool:
        """Redis or PostgreSQL away: not ready meanwhile; True when `exc` is one of those."""
        if not isinstance(exc, QueueUnavailable) and not connection.is_outage(exc):
            return False
        if self._healthy[name]:
            log.warning("worker.unavailable", loop=name, error=str(exc))
        self._healthy[name] = False
        return True

    # -- consuming --------------------------------------------------------------------------------
    async def _consume(self) -> None:
        misses = 0
        backoff = 0.2
        while not self.draining and not self._stopping:
            if len(self._running) >= self.settings.max_concurrent_tasks:
                self._running.freed.clear()
                await self._running.freed.wait()
                continue
            try:
                delivery = await self.queue.receive()
            except Exception as exc:
                if not self._outage("consumer", exc):
                    raise
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, 5.0)
                continue
            self._healthy["consumer"] = True
            backoff = 0.2
            if delivery is None:
                misses = 0 if await self._idle(misses) else misses + 1
                continue
            misses = 0
            await self._take(delivery)

    async def _idle(self, misses: int) -> bool:
        """Wait before the next look at the queue, backing off to IDLE_POLL_SECONDS; True when woken early by
        the NOTIFY that creating a job sends anyway (its messages follow within milliseconds)."""
        ready = self.listener.tasks_ready
        delay = min(0.005 * 2 ** min(misses, 8), IDLE_POLL_SECONDS) * random.uniform(0.5, 1.0)
        if not await wait_set(ready, delay):
            return False
        ready.clear()
        return True

    async def _take(self, delivery: Delivery) -> None:
        if self.draining:
            with contextlib.suppress(QueueUnavailable):
                await self.queue.requeue(delivery)
            return
        if await self._pass_over(delivery):
            return
        try:
            task = await self._claim(delivery.task_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.queue.requeue(delivery)
            raise
        try:
            await self.queue.ack(delivery)
        except QueueUnavailable:  # Redis hands it out again later; its task is claimed, so that does nothing
            log.warning("worker.ack_failed", task_id=str(delivery.task_id))
        if task is None:
            log.debug("worker.nothing_to_do", task_id=str(delivery.task_id))
            return
        self._running.start(task, after=self._after)

    async def _claim(self, task_id: uuid.UUID) -> ClaimedTask | None:
        while True:
            try:
                return await dispatches.claim(self.pool, task_id, self.owner_id, self.settings.lease_seconds,
                                              self.settings.per_user_task_limit)
            except Exception as exc:
                if not connection.is_outage(exc):
                    raise
                log.warning("worker.database_unavailable", error=type(exc).__name__)
                await connection.wait_until_available(self.pool)

    async def _pass_over(self, delivery: Delivery) -> bool:
        """A second task of a job this worker runs goes back once, for an idle worker, when nothing else waits."""
        now = time.monotonic()
        self._passed_over = {k: t for k, t in self._passed_over.items() if now - t < PASSED_OVER_MEMORY_SECONDS}
        if delivery.task_id in self._passed_over:
            del self._passed_over[delivery.task_id]  # it came back: nobody else was free, so this worker runs it
            return False
        if not self._running.runs_job(delivery.job_id):
            return False
        try:
            if await self.queue.waiting() > 0:  # every worker is busy: spreading gains nothing
                return False
            await self.queue.requeue(delivery)
        except QueueUnavailable:
            return False
        self._passed_over[delivery.task_id] = now
        log.debug("worker.passed_over", task_id=str(delivery.task_id))
        await asyncio.sleep(PASS_OVER_SECONDS)
        return True

    async def _after(self, task: ClaimedTask) -> None:
        """A task handed back (draining) goes out again now; one released for a retry, when it is due."""
        self._sweep_soon.set()  # a slot of its user is free: a task that gave its message up may run now
        try:
            due_in = await dispatches.needs_message_in(self.pool, task.id)
            if due_in is None:
                return
            if due_in <= 0:
                await self.dispatcher.tasks([task.id])
            else:
                self._sweep_soon.set()  # the sweep sleeps until the earliest retry is due
        except Exception as exc:  # the next sweep, here or on another worker, sends it
            log.warning("worker.resend_failed", task_id=str(task.id), error=repr(exc))

    # -- sweeping ---------------------------------------------------------------------------------
    async def _sweep(self) -> None:
        while not self.draining and not self._stopping:
            wait = self.settings.poll_interval_seconds
            try:
                await owners.free_dead(self.pool, "worker.freed_dead_leases")  # their tasks go out in this sweep
                await self.dispatcher.sweep()
                release_in = await self.dispatcher.next_release_in()
                self._healthy["sweeper"] = True
                if release_in is not None:
                    wait = min(wait, max(release_in, 0.01))
            except Exception as exc:
                if not self._outage("sweeper", exc):
                    raise
                wait = min(wait, 1.0)
            self._sweep_soon.clear()
            await wait_set(self._sweep_soon, wait)
