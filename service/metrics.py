"""Prometheus metrics: every instrument the service exports, and the small functions the rest of the code calls.

Per process, not prometheus-client's multiprocess mode: each `dubbing serve` process answers `GET /metrics` with
its own counters and histograms (what it claimed, ran, asked providers, wrote), and Prometheus scrapes every
process as its own target; `sum`/`rate` over instances add them up, and a restart's reset is what `rate` expects.
The queue gauges (`dubbing_tasks`, `dubbing_queue_*`, `dubbing_tasks_stalled`, the last retention run) are read
from the database at scrape time, so every process reports the same figures: take `max` over instances. The
process pool's workers only do CPU work for their parent and report nothing; the parent measures what it sends
them. Why not multiprocess mode: see docs/operations.md ("Metrics").

Nothing else in the service touches a prometheus object: modules call the functions below.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# No `*_created` series: Prometheus does not need them and the dashboard does not use them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
_REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# -- from the database at scrape time (the same on every process) --------------------------------------
TASKS = Gauge("dubbing_tasks", "Unfinished tasks per stage (database; same on every process)", ["stage"],
              registry=REGISTRY)
QUEUE_CLAIMABLE = Gauge("dubbing_queue_claimable_tasks", "Tasks a supervisor could claim now, per stage (database)",
                        ["stage"], registry=REGISTRY)
QUEUE_OLDEST = Gauge("dubbing_queue_oldest_claimable_age_seconds",
                     "How long the oldest claimable task of each stage has waited (database)", ["stage"],
                     registry=REGISTRY)
TASKS_STALLED = Gauge("dubbing_tasks_stalled", "Unfinished tasks whose lease expired unclaimed (database)",
                      registry=REGISTRY)
RETENTION_LAST_SUCCESS = Gauge("dubbing_retention_last_success_timestamp_seconds",
                               "When the newest retention run without error finished (database; 0: never)",
                               registry=REGISTRY)
DATABASE_UP = Gauge("dubbing_database_up", "1 when this scrape could read the database", registry=REGISTRY)

# -- this process's work ---------------------------------------------------------------------------------
TASKS_FINISHED = Counter("dubbing_tasks_finished", "Tasks this process finished, by outcome and error code",
                         ["outcome", "error_code"], registry=REGISTRY)
TASK_RETRIES = Counter("dubbing_task_retries", "Failed stages this process handed back for a retry",
                       ["stage", "error_code"], registry=REGISTRY)
TASKS_CLAIMED = Counter("dubbing_tasks_claimed", "Tasks this process claimed", registry=REGISTRY)
CLAIM_LATENCY = Histogram("dubbing_claim_latency_seconds", "Round trip of one claim query (FOR UPDATE SKIP LOCKED)",
                          buckets=_FAST_BUCKETS, registry=REGISTRY)
STAGE_DURATION = Histogram("dubbing_stage_duration_seconds", "Time a stage ran, per stage and engine",
                           ["stage", "engine"], buckets=_STAGE_BUCKETS, registry=REGISTRY)
PROVIDER_LATENCY = Histogram("dubbing_provider_request_duration_seconds",
                             "One HTTP attempt to a provider, until its headers arrived",
                             ["provider", "endpoint"], buckets=_REQUEST_BUCKETS, registry=REGISTRY)
PROVIDER_REQUESTS = Counter("dubbing_provider_requests", "HTTP attempts to providers by status (or error name)",
                            ["provider", "endpoint", "status"], registry=REGISTRY)
PROVIDER_RETRIES = Counter("dubbing_provider_retries", "HTTP attempts that repeated an earlier failed one",
                           ["provider", "endpoint"], registry=REGISTRY)
SSE_STREAMS = Gauge("dubbing_sse_streams_open", "Progress streams open on this process", registry=REGISTRY)
POOL_WORKERS = Gauge("dubbing_pool_workers", "Process pool workers", registry=REGISTRY)
POOL_IN_FLIGHT = Gauge("dubbing_pool_calls_in_flight", "Calls sent to the process pool and not yet returned",
                       registry=REGISTRY)
POOL_QUEUE = Gauge("dubbing_pool_queue_length", "Calls waiting for a free process pool worker", registry=REGISTRY)
LOOP_LAG = Histogram("dubbing_event_loop_lag_seconds", "How late a 250 ms timer fired on the event loop",
                     buckets=_FAST_BUCKETS, registry=REGISTRY)
DB_POOL_IN_USE = Gauge("dubbing_db_pool_connections_in_use", "Database pool connections checked out",
                       registry=REGISTRY)
DB_POOL_OPEN = Gauge("dubbing_db_pool_connections", "Database pool connections open", registry=REGISTRY)
ARTIFACT_BYTES = Counter("dubbing_artifact_bytes_written", "Bytes of artifacts this process stored, per kind",
                         ["kind"], registry=REGISTRY)
ARTIFACTS_WRITTEN = Counter("dubbing_artifacts_written", "Artifacts this process stored, per kind", ["kind"],
                            registry=REGISTRY)
RETENTION_OBJECTS = Counter("dubbing_retention_deleted_objects",
                            "Objects this process's retention runs deleted (artifact, input, upload)", ["what"],
                            registry=REGISTRY)
RETENTION_BYTES = Counter("dubbing_retention_deleted_bytes", "Bytes this process's retention runs deleted",
                          ["what"], registry=REGISTRY)

for _outcome in ("complete", "failed", "cancelled"):  # so rate() has a series from the first scrape
    TASKS_FINISHED.labels(_outcome, "")


# -- what the rest of the service calls --------------------------------------------------------------------
def task_finished(outcome: str, error_code: str | None = None, count: int = 1) -> None:
    if count > 0:
        TASKS_FINISHED.labels(outcome, error_code or "").inc(count)


def task_retried(stage: str, error_code: str) -> None:
    TASK_RETRIES.labels(stage, error_code).inc()


def claimed(seconds: float, tasks: int) -> None:
    CLAIM_LATENCY.observe(seconds)
    TASKS_CLAIMED.inc(tasks)


def stage_finished(stage: str, engine: str, seconds: float) -> None:
    STAGE_DURATION.labels(stage, engine).observe(seconds)


def provider_request(provider: str, endpoint: str, status: int | str, seconds: float, attempt: int) -> None:
    PROVIDER_LATENCY.labels(provider, endpoint).observe(seconds)
    PROVIDER_REQUESTS.labels(provider, endpoint, str(status)).inc()
    if attempt > 1:
        PROVIDER_RETRIES.labels(provider, endpoint).inc()


def artifact_written(kind: str, size_bytes: int) -> None:
    ARTIFACTS_WRITTEN.labels(kind).inc()
    ARTIFACT_BYTES.labels(kind).inc(size_bytes)


def retention_deleted(what: str, objects: int, size_bytes: int) -> None:
    if objects:
        RETENTION_OBJECTS.labels(what).inc(objects)
        RETENTION_BYTES.labels(what).inc(size_bytes)


@contextlib.asynccontextmanager
async def watching_event_loop(interval: float = 0.25) -> AsyncIterator[None]:
    """Measure, while open, how late a timer fires: what every request and stream on this loop waits extra."""

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            LOOP_LAG.observe(max(0.0, loop.time() - before - interval))

    watcher = asyncio.create_task(watch(), name="event-loop-lag")
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def database_read(stages: list[tuple[str, int, int, float]] | None, stalled: int = 0,
                  last_retention_success: float | None = None) -> None:
    """The scrape-time gauges from the database: per stage (stage, tasks, claimable, oldest claimable age);
    `stages` None when the database did not answer (`dubbing_database_up 0` rather than a failed scrape)."""
    if stages is None:
        DATABASE_UP.set(0)
        return
    DATABASE_UP.set(1)
    for stage, tasks, claimable, oldest in stages:
        TASKS.labels(stage).set(tasks)
        QUEUE_CLAIMABLE.labels(stage).set(claimable)
        QUEUE_OLDEST.labels(stage).set(oldest)
    TASKS_STALLED.set(stalled)
    RETENTION_LAST_SUCCESS.set(last_retention_success or 0)


def exposition(open_streams: int, pool_workers: int, pool_calls: int, db_open: int, db_in_use: int) -> bytes:
    """The exposition text, after the scrape-time gauges of this process."""
    SSE_STREAMS.set(open_streams)
    POOL_WORKERS.set(pool_workers)
    POOL_IN_FLIGHT.set(pool_calls)
    POOL_QUEUE.set(max(0, pool_calls - pool_workers))
    DB_POOL_OPEN.set(db_open)
    DB_POOL_IN_USE.set(db_in_use)
    return generate_latest(REGISTRY)
