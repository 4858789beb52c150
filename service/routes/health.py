"""`/healthz` (the process answers) and `/readyz` (it can do its work)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.db import migrations


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    checks: dict[str, bool] = {"database": False, "migrations": False, "supervisor": False, "listener": False}
    checks["database"], checks["migrations"] = await migrations.database_state(state.pool)
    checks["supervisor"] = bool(state.supervisor and state.supervisor.running)
    if state.settings.role == "api":  # never runs stages: nothing to supervise
        del checks["supervisor"]
    checks["listener"] = state.listener.connected.is_set()
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)
