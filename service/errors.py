"""One error hierarchy for the API, the stages, the engines, storage, providers and the audio code.

Every expected failure is a `DubbingError`: a stable `code`, a `message` fit to show the person whose
job it is (never a filesystem path, never a secret), and `retryable`, whether a later attempt may
succeed. That flag is decided once, where the failure is understood (the provider's HTTP status, the
engine's timeout), and read by whoever handles it: the supervisor retries a stage on it, the API
answers 503 on it. An `ApiError` leaves the API as `{"error": {"code", "message"}}` with its status.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class DubbingError(Exception):
    """A failure with a code, a user-facing message and whether trying again later may help."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross the process pool by pickle; subclasses have other constructors, so rebuild
        # from the instance's fields rather than from `args`.
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[DubbingError], state: dict[str, Any]) -> DubbingError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ApiError(DubbingError):
    """A request the API refuses: answered with `status` and the error body."""

    def __init__(self, status: int, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(code, message, retryable=retryable)
        self.status = status


class StageError(DubbingError):
    """A stage failed for a reason worth telling the user."""


class EngineError(DubbingError):
    """An engine (speech-to-text, translation, synthesis) failed.

    Codes: engine_missing, engine_failed, engine_timeout, unsupported_language, model_missing,
    bad_input, empty_text, provider_auth, provider_quota, provider_unavailable, provider_rejected.
    """

    def __init__(self, code: str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(code, message, retryable=code in _PASSING_ENGINE_CODES if retryable is None else retryable)


# Engine failures that pass: the machine was busy, the provider was down.
_PASSING_ENGINE_CODES = frozenset({"engine_timeout", "provider_unavailable"})


class AudioError(DubbingError):
    """The audio code failed: `audio_undecodable` (the input's fault) or ffmpeg failing on our own
    intermediate files (`ffmpeg_failed`, `loudness_failed`, `stretch_failed`: worth another attempt)."""

    def __init__(self, code: str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(code, message, retryable=code != "audio_undecodable" if retryable is None else retryable)


class StorageError(DubbingError):
    """A storage failure with the HTTP status it maps to (Supabase Storage's codes: NoSuchKey, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message, retryable=status >= 500 or status == 429)
        self.status = status


class ProviderError(DubbingError):
    """A provider call that failed for good, after the HTTP layer's own retries."""

    def __init__(self, provider: str, status: int | None, code: str, message: str, *,
                 retryable: bool = False, request_id: str | None = None) -> None:
        super().__init__(code, message, retryable=retryable)
        self.provider = provider
        self.status = status  # None: no answer (timeout, connection failure)
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}"


class LeaseLost(Exception):
    """Not a failure: the task was cancelled or taken over; stop without writing anything more."""


# -- what users see -------------------------------------------------------------------------------------

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/:'\"<>|]+/)+([^\s/:'\"<>|]+)")


def without_paths(message: str) -> str:
    """`message` with every absolute filesystem path shortened to the file's name: error messages name the
    object, never where a server keeps it (logs keep the whole text)."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


# -- the API's answer ---------------------------------------------------------------------------------


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.code, without_paths(exc.message), headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered as a 500 that says nothing about our insides."""
    structlog.get_logger(__name__).exception("http.unhandled", path=request.url.path)
    return error_response(500, "internal_error", "Something went wrong on our side")


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def unprocessable(code: str, message: str) -> ApiError:
    return ApiError(422, code, message)


def not_found(message: str = "Not found") -> ApiError:
    return ApiError(404, "not_found", message)
