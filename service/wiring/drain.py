"""Draining on SIGTERM: what `dubbing serve`'s signal handler sets off, and what shutdown waits for."""

from __future__ import annotations

import asyncio

import structlog
from starlette.applications import Starlette

from service.routes.services import Services

log = structlog.get_logger(__name__)


class Drain:
    """SIGTERM: end every progress stream now (clients resume elsewhere with Last-Event-ID), stop claiming, give
    the running stages SHUTDOWN_DRAIN_SECONDS, hand back the rest."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.loop = asyncio.get_running_loop()
        self.task: asyncio.Task[None] | None = None

    def request(self) -> None:
        """From a signal handler: only schedules the drain on the loop."""
        self.loop.call_soon_threadsafe(self.begin)

    def begin(self) -> None:
        if self.task is not None:
            return
        settings, listener = self.services.settings, self.services.listener
        log.info("service.draining", seconds=settings.shutdown_drain_seconds, streams=listener.open_streams)
        listener.end_streams()
        if self.services.stage_loop is not None:
            self.task = asyncio.create_task(self.services.stage_loop.drain(settings.shutdown_drain_seconds))

    async def finish(self) -> None:
        """At shutdown: the drain under way, or stop the stage loop now (handing back what it runs)."""
        if self.task is not None:
            await self.task
        elif self.services.stage_loop is not None:
            await self.services.stage_loop.stop()


def request_drain(app: Starlette) -> None:
    """`dubbing serve`'s signal handler: drain, if the lifespan got as far as starting."""
    drain = getattr(app.state, "drain", None)
    if isinstance(drain, Drain):
        drain.request()
