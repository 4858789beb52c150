"""The API's answer to a failure: `{"error": {"code", "message"}}` with its status, and the app's exception
handlers. The error classes and codes themselves are `service.errors` (which knows nothing of HTTP)."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.errors import ApiError, ErrorCode, without_paths


def error_response(status: int, code: ErrorCode | str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.code, without_paths(exc.message), headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered as a 500 that says nothing about our insides."""
    structlog.get_logger(__name__).exception("http.unhandled", path=request.url.path)
    return error_response(500, ErrorCode.INTERNAL_ERROR, "Something went wrong on our side")


def bad_request(code: ErrorCode, message: str) -> ApiError:
    return ApiError(400, code, message)


def unprocessable(code: ErrorCode, message: str) -> ApiError:
    return ApiError(422, code, message)


def not_found(message: str = "Not found") -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, message)
