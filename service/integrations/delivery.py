"""The delivery loop: sends what the outbox holds, in the process's event loop, at least once.

It wakes on the `outbox` NOTIFY (sql/036's trigger sends one with every row, committed with the change), on
a reconnect of the listener, or when the next retry is due; it never polls faster than that. Each message is
taken under a short lease, sent, and settled: delivered, retried later (WEBHOOK_RETRY_BASE_SECONDS doubling up
to WEBHOOK_RETRY_MAX_SECONDS, ±10 %, for WEBHOOK_RETRY_HOURS), or dead (refused for good). A process killed
between the commit and the send leaves the row pending: the next process (or this one restarted) sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime

import asyncpg
import httpx
import structlog

from service.db import outbox
from service.db.listener import Listener
from service.db.outbox import Message
from service.errors import ErrorCode
from service.integrations import signing
from service.integrations.attempts import Attempt
from service.integrations.stripe_meter import StripeMeter
from service.integrations.webhook_sender import WebhookSender
from service.settings import Settings
from service.supervisor.running import keep_running, wait_set

log = structlog.get_logger(__name__)

BATCH = 32
IDLE_WAKE_SECONDS = 60.0  # with nothing pending, look once a minute anyway (a NOTIFY lost in a reconnect)


def retry_delay(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: exponential from the base, capped, with ±10 % jitter."""
    delay = min(settings.webhook_retry_base_seconds * 2 ** max(attempt - 1, 0), settings.webhook_retry_max_seconds)
    return float(delay * random.uniform(0.9, 1.1))


class Delivery:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, listener: Listener,
                 stripe_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.listener = listener
        key = signing.secret_bytes(settings.webhook_secret) if settings.webhook_secret else None
        self.webhooks = (WebhookSender(key, settings.webhook_allow_private, settings.webhook_timeout_seconds)
                         if key else None)
        self.stripe = (StripeMeter(settings.stripe_api_key, settings.stripe_base_url, settings.stripe_meter_event,
                                   stripe_transport) if settings.stripe_api_key else None)
        self.lease_seconds = settings.webhook_timeout_seconds + 30.0
        self._main: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.limit = asyncio.Semaphore(16)

    async def start(self) -> None:
        self._main = asyncio.create_task(keep_running(self._loop, self._crashed), name="outbox-delivery")

    async def stop(self) -> None:
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        for sending in list(self._sending):  # unsettled messages go again after their lease
            sending.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        for client in (self.webhooks, self.stripe):
            if client is not None:
                await client.aclose()

    def _crashed(self, exc: Exception, delay: float) -> None:
        log.error("outbox.crashed", error=repr(exc), restart_in=round(delay, 2))

    async def _loop(self) -> None:
        while True:
            self.listener.outbox_ready.clear()
            taken = await outbox.take_due(self.pool, BATCH, self.lease_seconds)
            for message in taken:
                sending = asyncio.create_task(self._deliver(message))
                self._sending.add(sending)
                sending.add_done_callback(self._sending.discard)
            if len(taken) == BATCH:
                continue
            due_in = await outbox.next_due_in(self.pool)
            wait = IDLE_WAKE_SECONDS if due_in is None else min(max(due_in, 0.01), IDLE_WAKE_SECONDS)
            await wait_set(self.listener.outbox_ready, wait)  # not wait_for: it may swallow stop()'s cancel

    async def _deliver(self, message: Message) -> None:
        async with self.limit:
            try:
                attempt = await self._attempt(message)
            except Exception as exc:  # a bug, or the database: the message goes again after its lease
                log.exception("outbox.attempt_crashed", message_id=str(message.id), error=repr(exc))
                return
            await self._settle(message, attempt)

    async def _attempt(self, message: Message) -> Attempt:
        if message.destination == "stripe":
            if self.stripe is None:
                return Attempt(False, None, 0.0, "STRIPE_API_KEY is not set: not billed", retry=False)
            customer = await outbox.customer_of(self.pool, message.owner_id, message.job_id)
            if customer is None:
                return Attempt(False, None, 0.0, f"{ErrorCode.NO_BILLING_CUSTOMER}: no Stripe customer for "
                               f"user {message.owner_id!r}", retry=False)
            return await self.stripe.report(customer, message.payload)
        if self.webhooks is None or message.url is None:
            return Attempt(False, None, 0.0, "WEBHOOK_SECRET is not set: nothing is signed or sent")
        return await self.webhooks.send(message.url, message.webhook_id, message.payload)

    async def _settle(self, message: Message, attempt: Attempt) -> None:
        retry_in: float | None = None
        if attempt.delivered:
            state = "delivered"
        elif message.destination == "stripe" and self.stripe is None:
            state = "skipped"
        else:
            age_hours = (datetime.now(UTC) - message.created_at).total_seconds() / 3600
            if attempt.retry and age_hours < self.settings.webhook_retry_hours:
                state, retry_in = "pending", retry_delay(self.settings, message.attempts)
            else:
                state = "dead"
        await outbox.settle(self.pool, message.id, message.attempts, state=state, status=attempt.status,
                            latency_ms=attempt.latency_ms, error=attempt.error, excerpt=attempt.response_excerpt,
                            retry_in=retry_in)
        if retry_in is not None:  # the loop may be sleeping until a later time: let it look again
            self.listener.outbox_ready.set()
        log.info("outbox.attempt", message_id=str(message.id), destination=message.destination,
                 event_type=message.event_type, attempt=message.attempts, state=state, status=attempt.status,
                 ms=attempt.latency_ms, error=attempt.error, retry_in=None if retry_in is None else round(retry_in, 1))
