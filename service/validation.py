"""Reading and checking JSON request bodies, so every route rejects bad input the same way."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from starlette.requests import Request

from service.errors import ApiError, bad_request, not_found

MAX_JSON_BYTES = 64 * 1024


async def read_json_object(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, "body_too_large", f"The JSON body is larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request("malformed_json", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise bad_request("invalid_body", "The body must be a JSON object")
    return data


def missing(field: str) -> ApiError:
    return ApiError(422, "missing_field", f"'{field}' is required")


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_field", f"'{field}' {message}")


def required_str(data: dict[str, Any], field: str, max_length: int = 1024) -> str:
    value = data.get(field)
    if value is None:
        raise missing(field)
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, "must be a non-empty string")
    if len(value) > max_length:
        raise invalid(field, f"must be at most {max_length} characters")
    return value.strip()


def optional_str(data: dict[str, Any], field: str, max_length: int = 1024) -> str | None:
    if data.get(field) is None:
        return None
    return required_str(data, field, max_length)


def required_int(data: dict[str, Any], field: str) -> int:
    value = data.get(field)
    if value is None:
        raise missing(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(field, "must be an integer")
    return value


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
        raise bad_request("invalid_query", f"'{name}' must be an integer") from exc
    if not low <= value <= high:
        raise bad_request("invalid_query", f"'{name}' must be between {low} and {high}")
    return value
