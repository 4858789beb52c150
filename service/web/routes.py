"""The web page's routes, for `create_app` to add beside the API's."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from service.errors import error_response
from service.settings import Settings
from service.web import api, page

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def web_routes(settings: Settings) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/", page.index, methods=["GET", "HEAD"]),
        Route("/config.json", page.config, methods=["GET"]),
        Mount("/static", app=page.PageFiles(directory=page.STATIC_DIR), name="static"),
        Route("/v1/languages", api.list_languages, methods=["GET"]),
        Route("/v1/jobs/{job_id}/inputs", api.job_inputs, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events/ticket", api.events_ticket, methods=["POST"]),
        Route("/v1/jobs/{job_id}/events/stream", api.events_stream, methods=["GET"]),
    ]
    if settings.local_auth:  # never in cloud mode, nor with a configured SUPABASE_JWT_SECRET
        routes.append(Route("/local/token", api.local_token, methods=["POST"]))
    return routes


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown paths, static files) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)
