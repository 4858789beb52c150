"""Path and query parameters, checked the same way by every route (bodies: `routes/models.py`)."""

from __future__ import annotations

from uuid import UUID

from starlette.requests import Request

from service.errors import ErrorCode
from service.routes.errors import bad_request, not_found

MAX_JSON_BYTES = 64 * 1024


def path_uuid(request: Request, name: str = "job_id") -> UUID:
    """A malformed id names no job the caller has: 404, like any other missing job."""
    try:
        return UUID(request.path_params[name])
    except ValueError as exc:
        raise not_found("Job not found") from exc


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(ErrorCode.INVALID_QUERY, f"'{name}' must be an integer") from exc
    if not low <= value <= high:
        raise bad_request(ErrorCode.INVALID_QUERY, f"'{name}' must be between {low} and {high}")
    return value
