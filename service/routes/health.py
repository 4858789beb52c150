"""`/healthz` (the process answers) and `/readyz` (it can do its work)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import migrate


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    checks: dict[str, bool] = {"database": False, "migrations": False, "supervisor": False, "listener": False}
    try:
        async with state.pool.acquire(timeout=2) as conn:
            checks["database"] = await conn.fetchval("SELECT true")
            checks["migrations"] = not await migrate.pending(conn)
    except Exception:
        pass
    checks["supervisor"] = bool(state.supervisor and state.supervisor.running)
    checks["listener"] = state.listener.connected.is_set()
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)
