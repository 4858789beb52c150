"""Every route the app serves, in one place: the API, the local storage's signed URLs, the web page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from service.errors import ErrorCode, StorageError
from service.routes import (
    dub_languages,
    events,
    health,
    jobs,
    languages,
    local_token,
    signed_urls,
    transcript,
    uploads,
    usage,
)
from service.routes.errors import error_response
from service.routes.metrics import serve_metrics
from service.routes.openapi import openapi_document
from service.settings import Settings
from service.web import page

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.BODY_TOO_LARGE}
_STORAGE_CODES = {404: "NoSuchKey", 405: "MethodNotAllowed"}


async def serve_openapi(settings: Settings, request: Request) -> Response:
    return JSONResponse(openapi_document(settings.public_base_url, settings.local_auth, settings.max_upload_bytes,
                                         settings.max_target_languages))


Endpoint = Callable[[Request], Awaitable[Response]]

# The API's paths and, for each, its methods, in the order the router tries them.
_API: dict[str, dict[str, Endpoint]] = {
    "/healthz": {"GET": health.healthz},
    "/readyz": {"GET": health.readyz},
    "/metrics": {"GET": serve_metrics},  # 404 unless METRICS_TOKEN is set
    "/v1/languages": {"GET": languages.list_languages},
    "/v1/uploads": {"POST": uploads.create_uploads},
    "/v1/jobs": {"POST": jobs.create_job, "GET": jobs.list_jobs},
    "/v1/usage": {"GET": usage.get_usage},
    "/v1/jobs/{job_id}": {"GET": jobs.get_job, "DELETE": jobs.delete_job},
    "/v1/jobs/{job_id}/artifacts": {"GET": jobs.list_artifacts},
    "/v1/jobs/{job_id}/inputs": {"GET": jobs.job_inputs},
    "/v1/jobs/{job_id}/cancel": {"POST": jobs.cancel_job},
    "/v1/jobs/{job_id}/events": {"GET": events.job_events},
    "/v1/jobs/{job_id}/events/ticket": {"POST": events.events_ticket},
    "/v1/jobs/{job_id}/events/stream": {"GET": events.events_stream},
    "/v1/jobs/{job_id}/transcript": {"GET": transcript.get_transcript},
    "/v1/jobs/{job_id}/transcript/segments/{segment_id}": {"PATCH": transcript.patch_segment},
    "/v1/jobs/{job_id}/transcript/segments/{segment_id}/split": {"POST": transcript.split_segment},
    "/v1/jobs/{job_id}/transcript/segments/{segment_id}/merge": {"POST": transcript.merge_segment},
    "/v1/jobs/{job_id}/transcript/segments/{segment_id}/history": {"GET": transcript.segment_history},
    "/v1/jobs/{job_id}/languages": {"POST": dub_languages.add_languages},
    "/v1/jobs/{job_id}/languages/{language}": {"GET": dub_languages.get_language},
    "/v1/jobs/{job_id}/languages/{language}/segments/{segment_id}": {"PATCH": dub_languages.patch_translation},
    "/v1/jobs/{job_id}/languages/{language}/captions": {"PUT": dub_languages.put_captions},
    "/v1/jobs/{job_id}/languages/{language}/render": {"POST": dub_languages.render_language},
}


def _by_method(endpoints: dict[str, Endpoint]) -> Endpoint:
    """One route per path, whatever its methods: a 405 then names them all in `Allow` (one route per method
    named only its own). HEAD is answered as GET."""

    async def endpoint(request: Request) -> Response:
        return await endpoints["GET" if request.method == "HEAD" else request.method](request)

    return endpoint


def table(settings: Settings) -> list[BaseRoute]:
    """The routes for these settings. Those that only read settings have them bound here: they answer before
    (and without) the lifespan's services."""
    routes: list[BaseRoute] = [
        Route(path, _by_method(endpoints), methods=list(endpoints)) for path, endpoints in _API.items()
    ]
    routes += [
        Route("/openapi.json", partial(serve_openapi, settings), methods=["GET"]),
        Route("/storage/v1/object/upload/sign/{bucket}/{path:path}", signed_urls.upload_to_signed_url,
              methods=["PUT", "POST"]),
        Route("/storage/v1/object/sign/{bucket}/{path:path}", signed_urls.download_from_signed_url,
              methods=["GET", "HEAD"]),
        Route("/", partial(page.index, settings), methods=["GET", "HEAD"]),
        Route("/config.json", partial(page.config, settings), methods=["GET"]),
        Mount("/static", app=page.PageFiles(settings, directory=page.STATIC_DIR), name="static"),
    ]
    if settings.local_auth:  # never in cloud mode, nor with a configured SUPABASE_JWT_SECRET
        routes.append(Route("/local/token", partial(local_token.local_token, settings), methods=["POST"]))
    return routes


async def handle_database_outage(request: Request, exc: Exception) -> Response:
    """The database was unreachable, out of connections or gave up on a deadlock: the request did nothing
    (its transaction rolled back) and may be sent again."""
    structlog.get_logger(__name__).warning("http.database_unavailable", path=request.url.path,
                                           error=type(exc).__name__)
    return error_response(503, ErrorCode.DATABASE_UNAVAILABLE, "The database is unavailable for a moment; try again",
                          {"Retry-After": "1"})


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown paths, static files) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and "Allow" not in headers:  # the static files' own 405 names no methods
        headers["Allow"] = "GET, HEAD"
    if request.url.path.startswith("/storage/"):  # Storage's own wire format on its routes
        return signed_urls.storage_error(StorageError(exc.status_code, _STORAGE_CODES.get(exc.status_code, "Error"),
                                                      str(exc.detail)), headers)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
    return error_response(exc.status_code, code, str(exc.detail), headers or None)
