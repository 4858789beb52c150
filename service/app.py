"""The Starlette app: its routes for this process's role, its error handlers and middleware, and the lifespan
that starts the services (`service.wiring`)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from service.db import connection
from service.engines.capabilities import LanguageCheck
from service.errors import ApiError
from service.routes.cors import CorsMiddleware
from service.routes.errors import handle_api_error, handle_unexpected
from service.routes.middleware import RequestContext
from service.routes.table import handle_database_outage, handle_http_exception
from service.settings import Settings
from service.stages.context import StageFn
from service.wiring import roles
from service.wiring.engines import EngineFactory
from service.wiring.lifespan import Options, lifespan


def create_app(
    settings: Settings,
    registry: Mapping[str, StageFn] | None = None,
    language_check: LanguageCheck | None = None,
    run_supervisor: bool = True,
    engines: EngineFactory | None = None,
    provider_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The app. `registry` None runs the real pipeline with the engines `engines(executor)` builds
    (default: those the settings choose)."""
    options = Options(registry, language_check, run_supervisor, engines, provider_transport)
    app = Starlette(
        routes=roles.routes(settings),
        lifespan=lifespan(settings, options),
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception,
                            **dict.fromkeys(connection.OUTAGES, handle_database_outage), Exception: handle_unexpected},
    )
    app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(RequestContext)
    return app

