"""Retention inside the service: every RETENTION_INTERVAL_MINUTES (0 turns it off), so it needs no human and no cron.

Every process checks on start and then every few minutes; under an advisory lock, the one that gets it runs
retention when no run (its own, another process's, or `dubbing retention` from cron) started within the interval.
So however many processes there are, retention runs about once per interval, and `ops.retention_runs` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator

import asyncpg
import structlog

from service import retention
from service.db import retention_runs
from service.retention import RetentionReport
from service.settings import Settings
from service.storage import Storage

log = structlog.get_logger(__name__)

_LONGEST_CHECK_SECONDS = 300.0


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def record(pool: asyncpg.Pool, storage: Storage, settings: Settings, trigger: str) -> RetentionReport:
    """One retention run, recorded in `retention_runs` (with its error, which is raised again)."""
    run_id = await retention_runs.start(pool, runner_name(), trigger)
    try:
        report = await retention.run(pool, storage, settings)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await asyncio.shield(retention_runs.finish(pool, run_id, None, repr(exc)[:2000]))
        raise
    await retention_runs.finish(pool, run_id, report.to_json(), None)
    return report


async def run_if_due(pool: asyncpg.Pool, storage: Storage, settings: Settings) -> RetentionReport | None:
    """Run retention if this process wins the lock and no run started within the interval; else None."""
    async with pool.acquire() as conn, conn.transaction():
        if not await retention_runs.try_schedule_lock(conn):
            return None
        if await retention_runs.started_within(conn, settings.retention_interval_minutes):
            return None
        return await record(pool, storage, settings, "schedule")


class RetentionSchedule:
    def __init__(self, pool: asyncpg.Pool, storage: Storage, settings: Settings) -> None:
        self.pool = pool
        self.storage = storage
        self.settings = settings
        self.checks = 0  # how many times this process has looked (tests wait on it)
        self.runs = 0
        self.checked = asyncio.Event()  # set after every check

    async def check(self) -> RetentionReport | None:
        try:
            report = await run_if_due(self.pool, self.storage, self.settings)
        except Exception as exc:
            log.warning("retention.failed", error=repr(exc))
            report = None
        else:
            if report is not None:
                self.runs += 1
                log.info("retention.done", **report.to_json())
        self.checks += 1
        self.checked.set()
        return report

    async def _loop(self) -> None:
        period = min(self.settings.retention_interval_minutes * 60, _LONGEST_CHECK_SECONDS)
        while True:
            await self.check()
            await asyncio.sleep(period * random.uniform(0.9, 1.1))


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, storage: Storage, settings: Settings) -> AsyncIterator[RetentionSchedule | None]:
    """The schedule for as long as the block runs; None when RETENTION_INTERVAL_MINUTES is 0."""
    if settings.retention_interval_minutes <= 0:
        yield None
        return
    schedule = RetentionSchedule(pool, storage, settings)
    loop = asyncio.create_task(schedule._loop(), name="retention-schedule")
    try:
        yield schedule
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
