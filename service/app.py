"""The Starlette app and its lifespan: database, listener, storage, process pool, supervisor.

One process, one event loop: the API and the supervisor share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any

import anyio
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from service import metrics, retention_schedule, scratch
from service.db import connection, migrations
from service.db.database import Database
from service.db.listener import Listener
from service.engines import capabilities
from service.engines.selection import choose_engines, open_clients
from service.errors import ApiError
from service.providers.http import ProviderClient, RetryPolicy
from service.queue import backends, roles
from service.routes.auth import JwksCache, TokenVerifier
from service.routes.cors import CorsMiddleware
from service.routes.errors import handle_api_error, handle_unexpected
from service.routes.middleware import RequestContext
from service.routes.table import handle_database_outage, handle_http_exception
from service.settings import Settings
from service.stages.context import StageFn
from service.storage.factory import open_storage
from service.workpool import cpu_pool

log = structlog.get_logger(__name__)


def default_registry() -> Mapping[str, StageFn]:
    """The stage functions the service runs; the pipeline's stages register here."""
    from service.stages import registry

    return registry.stages()


async def load_engines(settings: Settings, executor: Executor, factory: Callable[[Executor], Any]) -> Any:
    """The engines, checked once at start-up; None (and a warning) when one is missing."""
    from service.engines.offline.whisper import warm
    from service.engines.selection import describe
    from service.errors import EngineError

    try:
        engines = await asyncio.to_thread(factory, executor)
    except EngineError as exc:
        log.warning("engines.unavailable", code=exc.code, error=exc.message)
        return None
    log.info("engines.selected", **describe(engines))
    model_dir = getattr(engines.transcriber, "model_dir", None)
    if model_dir is None or not roles.runs_stages(settings):  # an API process never transcribes
        return engines
    # Load the Whisper model into every worker in the background: start-up does not wait for it.
    warming = asyncio.create_task(cpu_pool.warm(executor, settings.cpu_workers, [partial(warm, model_dir)]))
    warming.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.warning(
        "engines.warm_failed", error=repr(t.exception())))
    _background.add(warming)
    warming.add_done_callback(_background.discard)
    return engines


_background: set[asyncio.Task[Any]] = set()


def sweep_leftovers(settings: Settings) -> None:
    """Partial files left by this host's processes that died mid-write (kill -9) go at start-up."""
    removed = scratch.sweep_partials(settings.scratch_dir)
    if not settings.cloud_storage:
        removed += scratch.sweep_partials(settings.storage_dir)
    if removed:
        log.info("scratch.partials_removed", files=len(removed))


def begin_drain(state: Any, settings: Settings) -> None:
    """SIGTERM: end every progress stream now (clients resume elsewhere with Last-Event-ID), stop
    claiming, give the running stages SHUTDOWN_DRAIN_SECONDS, hand back the rest."""
    if state.drain_task is not None:
        return
    log.info("service.draining", seconds=settings.shutdown_drain_seconds, streams=state.listener.open_streams)
    state.listener.end_streams()
    if state.supervisor is not None:
        state.drain_task = asyncio.create_task(state.supervisor.drain(settings.shutdown_drain_seconds))


async def stop_supervisor(state: Any) -> None:
    if state.drain_task is not None:
        await state.drain_task
    else:
        await state.supervisor.stop()


def make_verifier(settings: Settings, transport: Any = None) -> TokenVerifier:
    jwks = None
    if settings.supabase_url:
        headers = {"apikey": settings.supabase_service_key} if settings.supabase_service_key else {}
        client = ProviderClient("supabase-auth", settings.supabase_url, headers, concurrency=4,
                                policy=RetryPolicy(attempts=2, total_timeout=10), transport=transport)
        jwks = JwksCache(client)
    return TokenVerifier(hs256_secret=settings.jwt_secret or None, issuer=settings.iss, jwks=jwks)


def create_app(
    settings: Settings,
    registry: Mapping[str, StageFn] | None = None,
    language_check: Callable[[str, list[str]], str | None] | None = None,
    run_supervisor: bool = True,
    engines: Callable[[Executor], Any] | None = None,
    provider_transport: Any = None,
) -> Starlette:
    """The app. `registry` None runs the real pipeline with the engines `engines(executor)` builds
    (default: the offline set)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = app.state
        location = await connection.locate(settings)
        state.database = location
        async with contextlib.AsyncExitStack() as stack:
            if location.embedded:  # the last thing to go: nothing of ours may outlive the process
                stack.push_async_callback(anyio.to_thread.run_sync, connection.stop_embedded, settings.embedded_db_dir)
            if app.state.verifier.jwks is not None:
                stack.push_async_callback(app.state.verifier.jwks.client.aclose)
            state.db = await Database.open(location.url)
            state.pool = state.db.pool
            stack.push_async_callback(state.db.close)
            if connection.is_transaction_pooler(location.listen_url):
                log.warning("database.listen_through_pooler",
                            hint="set DATABASE_LISTEN_URL to a direct or session-mode connection (port 5432)")
            # Migrations take a session advisory lock: a direct (or session-mode) connection.
            migrator = await connection.connect(location.listen_url)
            try:
                applied = await migrations.migrate(migrator)
            finally:
                await migrator.close()
            if applied:
                log.info("database.migrated", versions=applied)
            state.listener = Listener(location.listen_url)
            await state.listener.start()
            stack.push_async_callback(state.listener.stop)
            state.storage = await stack.enter_async_context(open_storage(settings, provider_transport))
            # Operations (docs/operations.md): event-loop lag for /metrics, retention every RETENTION_INTERVAL_MINUTES.
            await stack.enter_async_context(metrics.watching_event_loop())
            state.retention = await stack.enter_async_context(
                retention_schedule.running(state.pool, state.storage, settings))
            await anyio.to_thread.run_sync(sweep_leftovers, settings)
            state.executor = cpu_pool.create(settings.cpu_workers, str(settings.data_dir / "numba-cache"))
            stack.push_async_callback(cpu_pool.close, state.executor)
            state.probe_lane = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
            stack.callback(state.probe_lane.shutdown, wait=False, cancel_futures=True)
            await cpu_pool.warm(state.executor, settings.cpu_workers, [])
            state.engines = None
            if registry is None:
                clients = open_clients(settings, provider_transport)
                stack.push_async_callback(clients.aclose)
                factory = engines or partial(choose_engines, settings, clients)
                state.engines = await load_engines(settings, state.executor, factory)
                if state.engines is not None and app.state.language_check is None:
                    app.state.language_check = capabilities.language_check(state.engines)
            # QUEUE_BACKEND: what `POST /v1/jobs` sets in motion, and what runs stages here (not in --role api).
            state.queue = await stack.enter_async_context(backends.open_dispatch(settings, state.db))
            state.supervisor = None
            if run_supervisor and roles.runs_stages(settings):
                state.supervisor = backends.stage_runner(
                    settings, state.db, state.listener,
                    default_registry() if registry is None else registry,
                    state.storage, state.executor, state.engines, state.queue,
                )
                await state.supervisor.start()
                stack.push_async_callback(stop_supervisor, state)
            state.drain_task = None
            loop = asyncio.get_running_loop()
            state.request_drain = lambda: loop.call_soon_threadsafe(begin_drain, state, settings)
            log.info("service.started", embedded_db=location.embedded, url=settings.public_base_url,
                     role=settings.role, queue_backend=settings.queue_backend)
            # What start-up allocated lives for the whole process: keep it out of every GC pass.
            gc.freeze()
            yield

    app = Starlette(
        routes=roles.routes(settings),
        lifespan=lifespan,
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception,
                            **dict.fromkeys(connection.OUTAGES, handle_database_outage), Exception: handle_unexpected},
    )
    app.state.settings = settings
    app.state.language_check = language_check
    app.state.verifier = make_verifier(settings, provider_transport)
    app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(RequestContext)
    return app
