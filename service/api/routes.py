"""Every route the app serves, in one table: the API, the local storage's signed URLs, the web page."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from service.api import events, health, jobs, languages, local_token, signed_urls, uploads
from service.api.metrics import serve_metrics
from service.api.openapi import openapi_document
from service.errors import StorageError, error_response
from service.settings import Settings
from service.web import page

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
_STORAGE_CODES = {404: "NoSuchKey", 405: "MethodNotAllowed"}


async def serve_openapi(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    return JSONResponse(openapi_document(settings.public_base_url, settings.local_auth))


def table(settings: Settings) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/openapi.json", serve_openapi, methods=["GET"]),
        Route("/metrics", serve_metrics, methods=["GET"]),  # 404 unless METRICS_TOKEN is set
        Route("/v1/languages", languages.list_languages, methods=["GET"]),
        Route("/v1/uploads", uploads.create_uploads, methods=["POST"]),
        Route("/v1/jobs", jobs.create_job, methods=["POST"]),
        Route("/v1/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}", jobs.delete_job, methods=["DELETE"]),
        Route("/v1/jobs/{job_id}/artifacts", jobs.list_artifacts, methods=["GET"]),
        Route("/v1/jobs/{job_id}/inputs", jobs.job_inputs, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", jobs.cancel_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/events", events.job_events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events/ticket", events.events_ticket, methods=["POST"]),
        Route("/v1/jobs/{job_id}/events/stream", events.events_stream, methods=["GET"]),
        Route("/storage/v1/object/upload/sign/{bucket}/{path:path}", signed_urls.upload_to_signed_url,
              methods=["PUT", "POST"]),
        Route("/storage/v1/object/sign/{bucket}/{path:path}", signed_urls.download_from_signed_url,
              methods=["GET", "HEAD"]),
        Route("/", page.index, methods=["GET", "HEAD"]),
        Route("/config.json", page.config, methods=["GET"]),
        Mount("/static", app=page.PageFiles(directory=page.STATIC_DIR), name="static"),
    ]
    if settings.local_auth:  # never in cloud mode, nor with a configured SUPABASE_JWT_SECRET
        routes.append(Route("/local/token", local_token.local_token, methods=["POST"]))
    return routes


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown paths, static files) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/storage/"):  # Storage's own wire format on its routes
        return signed_urls.storage_error(StorageError(exc.status_code, _STORAGE_CODES.get(exc.status_code, "Error"),
                                                      str(exc.detail)))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)
