"""The Starlette app and its lifespan: database, listener, storage, process pool, supervisor.

One process, one event loop: the API and the supervisor share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor
from functools import partial
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service import database, migrate
from service.auth import JwksCache, TokenVerifier
from service.engines import capabilities
from service.engines.selection import choose_engines, open_clients
from service.errors import ApiError, error_response, handle_api_error
from service.listener import Listener
from service.openapi import openapi_document
from service.providers.http import ProviderClient, RetryPolicy
from service.routes import events, health, jobs, storage, uploads
from service.settings import Settings
from service.stages.context import StageFn
from service.storage.factory import open_storage
from service.supervisor import cpu_pool
from service.supervisor.supervisor import Supervisor
from service.web import web_routes
from service.web.cors import CorsMiddleware
from service.web.routes import handle_http_exception

log = structlog.get_logger(__name__)


class RequestContext:
    """Binds a request id to every log line of a request and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if scope["path"] not in ("/healthz", "/readyz"):
                    log.info("http.request", method=scope["method"], path=scope["path"], status=status,
                             ms=round((time.perf_counter() - started) * 1000, 1))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("http.unhandled", path=request.url.path)
    return error_response(500, "internal_error", "Something went wrong on our side")


async def serve_openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.state.settings.public_base_url))


def routes() -> list[Route]:
    return [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/openapi.json", serve_openapi, methods=["GET"]),
        Route("/v1/uploads", uploads.create_uploads, methods=["POST"]),
        Route("/v1/jobs", jobs.create_job, methods=["POST"]),
        Route("/v1/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/artifacts", jobs.list_artifacts, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", jobs.cancel_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/events", events.job_events, methods=["GET"]),
        Route("/storage/v1/object/upload/sign/{bucket}/{path:path}", storage.upload_to_signed_url,
              methods=["PUT", "POST"]),
        Route("/storage/v1/object/sign/{bucket}/{path:path}", storage.download_from_signed_url,
              methods=["GET", "HEAD"]),
    ]


def default_registry() -> Mapping[str, StageFn]:
    """The stage functions the service runs; the pipeline's stages register here."""
    from service.stages import registry

    return registry.stages()


async def load_engines(settings: Settings, executor: Executor, factory: Callable[[Executor], Any]) -> Any:
    """The engines, checked once at start-up; None (and a warning) when one is missing."""
    from service.engines.selection import describe
    from service.engines.types import EngineError
    from service.engines.whisper import warm

    try:
        engines = await asyncio.to_thread(factory, executor)
    except EngineError as exc:
        log.warning("engines.unavailable", code=exc.code, error=exc.message)
        return None
    log.info("engines.selected", **describe(engines))
    model_dir = getattr(engines.transcriber, "model_dir", None)
    if model_dir is None:
        return engines
    # Load the Whisper model into every worker in the background: start-up does not wait for it.
    warming = asyncio.create_task(cpu_pool.warm(executor, settings.cpu_workers, [partial(warm, model_dir)]))
    warming.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.warning(
        "engines.warm_failed", error=repr(t.exception())))
    _background.add(warming)
    warming.add_done_callback(_background.discard)
    return engines


_background: set[asyncio.Task[Any]] = set()


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
        location = await database.locate(settings)
        state.database = location
        async with contextlib.AsyncExitStack() as stack:
            if app.state.verifier.jwks is not None:
                stack.push_async_callback(app.state.verifier.jwks.client.aclose)
            state.pool = await database.create_pool(location.url)
            stack.push_async_callback(state.pool.close)
            if database.is_transaction_pooler(location.listen_url):
                log.warning("database.listen_through_pooler",
                            hint="set DATABASE_LISTEN_URL to a direct or session-mode connection (port 5432)")
            # Migrations take a session advisory lock: a direct (or session-mode) connection.
            migrator = await database.connect(location.listen_url)
            try:
                applied = await migrate.migrate(migrator)
            finally:
                await migrator.close()
            if applied:
                log.info("database.migrated", versions=applied)
            state.listener = Listener(location.listen_url)
            await state.listener.start()
            stack.push_async_callback(state.listener.stop)
            state.storage = await stack.enter_async_context(open_storage(settings, provider_transport))
            state.executor = cpu_pool.create(settings.cpu_workers, str(settings.data_dir / "numba-cache"))
            stack.callback(state.executor.shutdown, wait=False, cancel_futures=True)
            await cpu_pool.warm(state.executor, settings.cpu_workers, [])
            state.engines = None
            if registry is None:
                clients = open_clients(settings, provider_transport)
                stack.push_async_callback(clients.aclose)
                factory = engines or partial(choose_engines, settings, clients)
                state.engines = await load_engines(settings, state.executor, factory)
                if state.engines is not None and app.state.language_check is None:
                    app.state.language_check = capabilities.language_check(state.engines)
            state.supervisor = None
            if run_supervisor:
                state.supervisor = Supervisor(
                    settings, state.pool, state.listener,
                    default_registry() if registry is None else registry,
                    state.storage, state.executor, state.engines,
                )
                await state.supervisor.start()
                stack.push_async_callback(state.supervisor.stop)
            log.info("service.started", embedded_db=location.embedded, url=settings.public_base_url)
            # What start-up allocated lives for the whole process: keep it out of every GC pass.
            gc.freeze()
            yield

    app = Starlette(
        routes=routes() + web_routes(settings),
        lifespan=lifespan,
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception,
                            Exception: handle_unexpected},
    )
    app.state.settings = settings
    app.state.language_check = language_check
    app.state.verifier = make_verifier(settings, provider_transport)
    app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(RequestContext)
    return app
