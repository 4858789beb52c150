"""What a `dubbing serve` process starts, in order, and stops in reverse: database (migrated), listener, storage,
metrics' loop watch, retention schedule, process pool, engines, token verifier, dispatch, the outbox's delivery
loop and the stage loop; all
of it as one `Services` object on `app.state.services`.

One process, one event loop: the API and the stage loop share it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from functools import partial

import anyio
import httpx
import structlog
from starlette.applications import Starlette

from service import metrics, retention_schedule, scratch
from service.db import connection, migrations
from service.db.connection import DatabaseLocation
from service.db.database import Database
from service.db.listener import Listener
from service.engines import capabilities
from service.engines.capabilities import LanguageCheck
from service.engines.protocols import Engines
from service.engines.selection import choose_engines, open_clients
from service.integrations.delivery import Delivery
from service.providers.http import ProviderClient, RetryPolicy
from service.routes.auth import JwksCache, TokenVerifier
from service.routes.services import Services
from service.settings import Settings
from service.stages.context import StageFn, StageServices
from service.storage.factory import open_storage
from service.supervisor import clone_sweep
from service.wiring import backends, roles
from service.wiring.drain import Drain
from service.wiring.engines import EngineFactory, default_registry, load_engines
from service.workpool import cpu_pool

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Options:
    """What tests and benchmarks change about a process: `registry` None runs the real pipeline with the engines
    `engines(executor)` builds (default: those the settings choose)."""

    registry: Mapping[str, StageFn] | None = None
    language_check: LanguageCheck | None = None
    run_supervisor: bool = True
    engines: EngineFactory | None = None
    provider_transport: httpx.AsyncBaseTransport | None = None


def sweep_leftovers(settings: Settings) -> None:
    """Partial files left by this host's processes that died mid-write (kill -9) go at start-up."""
    removed = scratch.sweep_partials(settings.scratch_dir)
    if not settings.cloud_storage:
        removed += scratch.sweep_partials(settings.storage_dir)
    if removed:
        log.info("scratch.partials_removed", files=len(removed))


def make_verifier(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> TokenVerifier:
    jwks = None
    if settings.supabase_url:
        headers = {"apikey": settings.supabase_service_key} if settings.supabase_service_key else {}
        client = ProviderClient("supabase-auth", settings.supabase_url, headers, concurrency=4,
                                policy=RetryPolicy(attempts=2, total_timeout=10), transport=transport)
        jwks = JwksCache(client)
    return TokenVerifier(hs256_secret=settings.jwt_secret or None, issuer=settings.iss, jwks=jwks)


async def _open_database(stack: contextlib.AsyncExitStack, location: DatabaseLocation) -> Database:
    db = await Database.open(location.url)
    stack.push_async_callback(db.close)
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
    return db


async def _open_listener(stack: contextlib.AsyncExitStack, location: DatabaseLocation) -> Listener:
    listener = Listener(location.listen_url)
    await listener.start()
    stack.push_async_callback(listener.stop)
    return listener


async def _open_pool(stack: contextlib.AsyncExitStack, settings: Settings) -> Executor:
    executor = cpu_pool.create(settings.cpu_workers, str(settings.data_dir / "numba-cache"))
    stack.push_async_callback(cpu_pool.close, executor)
    await cpu_pool.warm(executor, settings.cpu_workers, [])
    return executor


def _open_probe_lane(stack: contextlib.AsyncExitStack) -> Executor:
    lane = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
    stack.callback(lane.shutdown, wait=False, cancel_futures=True)
    return lane


async def _open_engines(stack: contextlib.AsyncExitStack, settings: Settings, executor: Executor,
                        options: Options) -> Engines | None:
    """The engines, when this process runs the real pipeline (`options.registry` None)."""
    if options.registry is not None:
        return None
    clients = open_clients(settings, options.provider_transport)
    stack.push_async_callback(clients.aclose)
    return await load_engines(settings, executor, options.engines or partial(choose_engines, settings, clients))


def _open_verifier(stack: contextlib.AsyncExitStack, settings: Settings, options: Options) -> TokenVerifier:
    verifier = make_verifier(settings, options.provider_transport)
    if verifier.jwks is not None:
        stack.push_async_callback(verifier.jwks.client.aclose)
    return verifier


async def open_services(stack: contextlib.AsyncExitStack, settings: Settings, options: Options) -> Services:
    """Start everything but the stage loop (created here, started by `running`); `stack` stops it all."""
    location = await connection.locate(settings)
    if location.embedded:  # the last thing to go: nothing of ours may outlive the process
        stack.push_async_callback(anyio.to_thread.run_sync, connection.stop_embedded, settings.embedded_db_dir)
    db = await _open_database(stack, location)
    listener = await _open_listener(stack, location)
    storage = await stack.enter_async_context(open_storage(settings, options.provider_transport))
    # Operations (docs/operations.md): event-loop lag for /metrics, retention every RETENTION_INTERVAL_MINUTES.
    await stack.enter_async_context(metrics.watching_event_loop())
    retention = await stack.enter_async_context(retention_schedule.running(db.pool, storage, settings))
    await anyio.to_thread.run_sync(sweep_leftovers, settings)
    executor = await _open_pool(stack, settings)
    engines = await _open_engines(stack, settings, executor, options)
    if roles.runs_stages(settings):  # no voice clone outlives its job (supervisor/clone_sweep.py)
        await stack.enter_async_context(clone_sweep.running(db.pool, engines))
    core = StageServices(settings, db, listener, storage, executor, engines)
    # QUEUE_BACKEND: what `POST /v1/jobs` sets in motion, and what runs stages here (not in --role api).
    dispatch = await stack.enter_async_context(backends.open_dispatch(settings, db))
    stage_loop = None
    if options.run_supervisor and roles.runs_stages(settings):
        registry = default_registry() if options.registry is None else options.registry
        stage_loop = backends.stage_runner(core, registry, dispatch)
    if options.run_supervisor:  # webhooks and meter events from the outbox (sql/036), in this event loop
        delivery = Delivery(settings, db.pool, listener, options.provider_transport)
        await delivery.start()
        stack.push_async_callback(delivery.stop)
    check = options.language_check or (capabilities.language_check(engines) if engines else None)
    return Services(**{f.name: getattr(core, f.name) for f in fields(StageServices)}, database=location,
                    verifier=_open_verifier(stack, settings, options), language_check=check,
                    probe_lane=_open_probe_lane(stack), dispatch=dispatch, stage_loop=stage_loop,
                    retention=retention)


def lifespan(settings: Settings, options: Options) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the services for as long as the app runs, on `app.state.services`."""

    @contextlib.asynccontextmanager
    async def running(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            services = await open_services(stack, settings, options)
            drain = Drain(services)
            if services.stage_loop is not None:
                await services.stage_loop.start()
                stack.push_async_callback(drain.finish)
            app.state.services, app.state.drain = services, drain
            log.info("service.started", embedded_db=services.database.embedded, url=settings.public_base_url,
                     role=settings.role, queue_backend=settings.queue_backend)
            # What start-up allocated lives for the whole process: keep it out of every GC pass.
            gc.freeze()
            yield

    return running
