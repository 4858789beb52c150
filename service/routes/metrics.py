"""`GET /metrics`: Prometheus text format, only for `Authorization: Bearer $METRICS_TOKEN`.

Off (404, as for any unknown path) while METRICS_TOKEN is unset: never public by default.
"""

from __future__ import annotations

import asyncio
import hmac

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service import metrics
from service.db import ops
from service.errors import ErrorCode
from service.routes.errors import error_response, not_found
from service.routes.services import services
from service.workpool import cpu_pool


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _read_database(pool: asyncpg.Pool) -> None:
    """The queue gauges, read with a short timeout: a database outage shows as `dubbing_database_up 0`."""
    try:
        snapshot = await asyncio.wait_for(ops.snapshot(pool), timeout=5.0)
    except Exception:
        metrics.database_read(None)
        return
    stages = [(s.stage, s.tasks, s.claimable, s.oldest_claimable_age_seconds) for s in snapshot.stages]
    metrics.database_read(stages, snapshot.stalled, snapshot.last_retention_success)


async def serve_metrics(request: Request) -> Response:
    svc = services(request)
    token = svc.settings.metrics_token
    if not token:
        raise not_found("Not Found")
    if not _authorized(request, token):
        return error_response(401, ErrorCode.INVALID_TOKEN, "Send Authorization: Bearer <METRICS_TOKEN>",
                              {"WWW-Authenticate": 'Bearer realm="metrics"'})
    pool = svc.db.pool
    await _read_database(pool)
    body = metrics.exposition(svc.listener.open_streams, svc.settings.cpu_workers, cpu_pool.calls_in_flight(),
                              pool.get_size(), pool.get_size() - pool.get_idle_size())
    return Response(body, media_type=metrics.CONTENT_TYPE)
