"""`GET /metrics`: Prometheus text format, only for `Authorization: Bearer $METRICS_TOKEN`.

Off (404, as for any unknown path) while METRICS_TOKEN is unset: never public by default.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from service import metrics
from service.errors import ErrorCode
from service.routes.errors import error_response, not_found
from service.settings import Settings
from service.workpool import cpu_pool


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def serve_metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics_token:
        raise not_found("Not Found")
    if not _authorized(request, settings.metrics_token):
        return error_response(401, ErrorCode.INVALID_TOKEN, "Send Authorization: Bearer <METRICS_TOKEN>",
                              {"WWW-Authenticate": 'Bearer realm="metrics"'})
    state = request.app.state
    body = await metrics.scrape(state.pool, state.listener.open_streams, settings.cpu_workers,
                                cpu_pool.calls_in_flight())
    return Response(body, media_type=metrics.CONTENT_TYPE)
