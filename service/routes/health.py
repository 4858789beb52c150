"""`/healthz` (the process answers) and `/readyz` (it can do its work)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.db import migrations
from service.routes.services import services


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    checks: dict[str, bool] = {"database": False, "migrations": False, "supervisor": False, "listener": False}
    checks["database"], checks["migrations"] = await migrations.database_state(svc.db.pool)
    checks["supervisor"] = bool(svc.stage_loop and svc.stage_loop.running)
    if svc.settings.role == "api":  # never runs stages: nothing to supervise
        del checks["supervisor"]
    checks["listener"] = svc.listener.connected.is_set()
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)
