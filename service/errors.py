"""One error hierarchy for the API, the stages, the engines, storage, providers and the audio code.

Every expected failure is a `DubbingError`: a stable `code` (an `ErrorCode`), a `message` fit to show the
person whose job it is (never a filesystem path, never a secret), and `retryable`, whether a later attempt
may succeed. What a code means for retrying is decided here, once, in `RETRYABLE` beside the codes; an error
may say otherwise where the failure is understood better (a provider's HTTP status, a storage status). The
supervisor retries a stage on it, the API answers 503 on it. Codes a third party chose (a provider's, Supabase
Storage's `NoSuchKey`) stay the strings it sent.

Every exception class of the service lives here, and nothing here imports the web framework: pool workers
load this module too. The HTTP answer (`{"error": {"code", "message"}}`) is rendered in `routes/errors.py`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class ErrorCode(StrEnum):
    """Every code the service itself gives a failure; the value is what the wire, the events and the logs carry."""

    # -- requests the API refuses
    AUDIO_TOO_SHORT = "audio_too_short"
    BODY_TOO_LARGE = "body_too_large"
    FILE_TOO_LARGE = "file_too_large"
    HTTP_ERROR = "http_error"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INVALID_BODY = "invalid_body"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_FIELD = "invalid_field"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    INVALID_MEDIA = "invalid_media"
    INVALID_WINDOW = "invalid_window"
    MEDIA_TOO_LONG = "media_too_long"
    INVALID_QUERY = "invalid_query"
    INVALID_TICKET = "invalid_ticket"
    INVALID_TOKEN = "invalid_token"
    LOCAL_ONLY = "local_only"
    MALFORMED_JSON = "malformed_json"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MISSING_FIELD = "missing_field"
    MISSING_TICKET = "missing_ticket"
    MISSING_TOKEN = "missing_token"
    NOT_FOUND = "not_found"
    OBJECT_NOT_FOUND = "object_not_found"
    SAME_LANGUAGE = "same_language"
    TICKET_EXPIRED = "ticket_expired"
    TOKEN_EXPIRED = "token_expired"
    UNKNOWN_LANGUAGE = "unknown_language"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UPLOAD_SIZE_MISMATCH = "upload_size_mismatch"
    # -- editing a transcript or a translation (issue 22)
    STALE_REVISION = "stale_revision"
    PRECONDITION_REQUIRED = "precondition_required"
    RENDERING = "rendering"
    NOT_EDITABLE = "not_editable"
    INVALID_TIMING = "invalid_timing"
    CAPTIONS_MISMATCH = "captions_mismatch"
    LANGUAGE_EXISTS = "language_exists"
    # -- the service cannot answer right now
    DATABASE_UNAVAILABLE = "database_unavailable"
    ENGINES_UNAVAILABLE = "engines_unavailable"
    INTERNAL_ERROR = "internal_error"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    SHUTTING_DOWN = "shutting_down"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    # -- a task's stages and the supervisor
    INPUT_CHANGED = "input_changed"
    STAGE_UNAVAILABLE = "stage_unavailable"
    STT_FAILED = "stt_failed"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    TOO_MANY_INTERRUPTIONS = "too_many_interruptions"
    TRANSCRIPT_MISSING = "transcript_missing"
    # -- engines (speech to text, translation, synthesis)
    BAD_INPUT = "bad_input"
    EMPTY_TEXT = "empty_text"
    ENGINE_FAILED = "engine_failed"
    ENGINE_MISSING = "engine_missing"
    ENGINE_TIMEOUT = "engine_timeout"
    MODEL_CORRUPT = "model_corrupt"
    MODEL_MISSING = "model_missing"
    PROVIDER_AUTH = "provider_auth"
    PROVIDER_QUOTA = "provider_quota"
    PROVIDER_REJECTED = "provider_rejected"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    TRANSLATION_MALFORMED = "translation_malformed"
    TRANSLATION_MISALIGNED = "translation_misaligned"
    TRANSLATION_REFUSED = "translation_refused"
    TRANSLATION_TRUNCATED = "translation_truncated"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    # -- audio (ffmpeg, loudness, time stretching)
    AUDIO_UNDECODABLE = "audio_undecodable"
    FFMPEG_FAILED = "ffmpeg_failed"
    LOUDNESS_FAILED = "loudness_failed"
    STRETCH_FAILED = "stretch_failed"
    SEPARATION_FAILED = "separation_failed"
    # -- talking to a provider or to storage
    CONNECTION_FAILED = "connection_failed"
    DOWNLOAD_INTERRUPTED = "download_interrupted"
    MALFORMED_RESPONSE = "malformed_response"
    TIMEOUT = "timeout"


# The codes of failures that pass: the machine was busy, a provider or a dependency was down, ffmpeg failed on
# our own intermediate file. Every other code is for good unless the error says otherwise.
RETRYABLE: frozenset[ErrorCode] = frozenset({
    ErrorCode.DATABASE_UNAVAILABLE,
    ErrorCode.ENGINES_UNAVAILABLE,
    ErrorCode.INTERNAL_ERROR,
    ErrorCode.QUEUE_UNAVAILABLE,
    ErrorCode.SHUTTING_DOWN,
    ErrorCode.STORAGE_UNAVAILABLE,
    ErrorCode.TRANSCRIPT_MISSING,
    ErrorCode.ENGINE_TIMEOUT,
    ErrorCode.PROVIDER_UNAVAILABLE,
    ErrorCode.FFMPEG_FAILED,
    ErrorCode.LOUDNESS_FAILED,
    ErrorCode.STRETCH_FAILED,
    ErrorCode.CONNECTION_FAILED,
    ErrorCode.DOWNLOAD_INTERRUPTED,
    ErrorCode.MALFORMED_RESPONSE,
    ErrorCode.TIMEOUT,
})


def is_retryable(code: str) -> bool:
    """Whether a later attempt may succeed after a failure with `code` (a third party's code: no)."""
    return code in RETRYABLE


class DubbingError(Exception):
    """A failure with a code, a user-facing message and whether trying again later may help
    (by default what `RETRYABLE` says of the code)."""

    def __init__(self, code: ErrorCode | str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = is_retryable(code) if retryable is None else retryable

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
    """A request the API refuses: answered with `status` and the error body (`routes/errors.py`)."""

    code: ErrorCode

    def __init__(self, status: int, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(code, message, retryable=retryable)
        self.status = status


class StageError(DubbingError):
    """A stage failed for a reason worth telling the user; it may pass on a code stored by an earlier failure."""


class EngineError(DubbingError):
    """An engine (speech-to-text, translation, synthesis) failed."""

    code: ErrorCode

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(code, message, retryable=retryable)


class BadAnswer(EngineError):
    """A translation model's answer that cannot be used as it is: the batch is asked again, smaller; if a
    single segment's answer stays unusable, it fails the stage with this code."""


class AudioError(DubbingError):
    """The audio code failed: `audio_undecodable` (the input's fault) or ffmpeg failing on our own
    intermediate files (`ffmpeg_failed`, `loudness_failed`, `stretch_failed`: worth another attempt)."""

    code: ErrorCode

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(code, message, retryable=retryable)


class StorageError(DubbingError):
    """A storage failure with the HTTP status it maps to (Supabase Storage's own codes: NoSuchKey, ...);
    retryable when the status says the store had a moment (5xx, 429)."""

    def __init__(self, status: int, code: ErrorCode | str, message: str) -> None:
        super().__init__(code, message, retryable=status >= 500 or status == 429)
        self.status = status


class ProviderError(DubbingError):
    """A provider call that failed for good, after the HTTP layer's own retries; `code` is the provider's
    own when it sent one."""

    def __init__(self, provider: str, status: int | None, code: ErrorCode | str, message: str, *,
                 retryable: bool = False, request_id: str | None = None) -> None:
        super().__init__(code, message, retryable=retryable)
        self.provider = provider
        self.status = status  # None: no answer (timeout, connection failure)
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}"


class IdempotencyConflict(DubbingError):
    """The same idempotency key was used before with a different request."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.IDEMPOTENCY_CONFLICT, "This idempotency key was used for another request")


class StaleRevision(ApiError):
    """An edit sent with a revision (If-Match) another edit has moved past: nothing was written (412)."""

    def __init__(self, current: int) -> None:
        super().__init__(412, ErrorCode.STALE_REVISION,
                         f"Someone edited first: the revision is now {current}; reload and edit again")
        self.current = current


class EditConflict(ApiError):
    """An edit while the job's (or the language's) render runs: it would change what is being rendered (409)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, ErrorCode.RENDERING, message)


class EditRefused(ApiError):
    """An edit of something that cannot be edited now (no transcript yet, its inputs are gone) (409)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, ErrorCode.NOT_EDITABLE, message)


class QueueUnavailable(DubbingError):
    """Redis did not answer (down, restarting, unreachable)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.QUEUE_UNAVAILABLE, f"The task queue is unavailable: {detail}")


# -- not failures of a job -----------------------------------------------------------------------------


class LeaseLost(Exception):
    """Not a failure: the task was cancelled or taken over; stop without writing anything more."""


class Cancelled(Exception):
    """The task this work was for was cancelled; nobody is waiting for the result (`workpool/cancellation.py`)."""


class RetryableResponse(Exception):
    """A provider answer worth asking again (`providers/http.py`): what it said and how long it asked us to wait."""

    def __init__(self, response: httpx.Response, wait: float | None) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.wait = wait


class MigrationChanged(Exception):
    """A migration file was edited after it was applied: the database is not what the file says."""


class ApiRefused(Exception):
    """The API answered the command-line client with an error body."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        super().__init__(f"HTTP {response.status_code}: {message}")
        self.response = response


# -- what users see -------------------------------------------------------------------------------------

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/:'\"<>|]+/)+([^\s/:'\"<>|]+)")


def without_paths(message: str) -> str:
    """`message` with every absolute filesystem path shortened to the file's name: error messages name the
    object, never where a server keeps it (logs keep the whole text)."""
    return _ABSOLUTE_PATH.sub(r"\1", message)
