"""`GET /v1/usage`: what the caller used this UTC day and month, against QUOTA_MINUTES_PER_DAY."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.db import usage
from service.routes.auth import current_user
from service.routes.models import Usage, respond
from service.routes.services import services


def _period(start: datetime, used: usage.Used, quota: float | None) -> dict[str, Any]:
    shown: dict[str, Any] = {"start": start.isoformat(), "minutes_used": round(used.minutes, 2),
                             "dubbed_minutes": round(used.dubbed_minutes, 2), "languages": used.languages,
                             "jobs": used.jobs}
    if quota is not None:
        shown |= {"quota_minutes": quota, "minutes_left": round(max(quota - used.minutes, 0.0), 2)}
    return shown


async def get_usage(request: Request) -> Response:
    user = await current_user(request)
    svc = services(request)
    now = datetime.now(UTC)
    day, month = usage.day_start(now), usage.month_start(now)
    quota = svc.settings.quota_minutes_per_day or None
    return respond({"day": _period(day, await usage.used_since(svc.db.pool, user.id, day), quota),
                    "month": _period(month, await usage.used_since(svc.db.pool, user.id, month), None)}, Usage)
