"""The API's request and response bodies, defined once as msgspec Structs.

The same definitions decode and check every request body (`read_body`), shape every JSON answer
(`respond`), and become the OpenAPI document's components (`routes/openapi.py`), so what the document
says and what the API does cannot drift apart. Enums come from `service.domain`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from service.domain import ArtifactKind, InputKind, JobStatus, Stage
from service.errors import ApiError, ErrorCode
from service.routes.errors import bad_request

MAX_JSON_BYTES = 64 * 1024

Text = Annotated[str, Meta(min_length=1, max_length=1024, pattern=r"\S")]
LanguageCode = Annotated[str, Meta(min_length=1, max_length=35, description="ISO 639-1 code, e.g. 'es'")]
Time = Annotated[str, Meta(description="ISO 8601 date-time, UTC")]


# -- requests -----------------------------------------------------------------------------------------


class UploadFile(Struct, forbid_unknown_fields=False):
    kind: InputKind
    filename: Annotated[str, Meta(min_length=1, max_length=255, pattern=r"\S")]
    content_type: Annotated[str, Meta(min_length=1, max_length=255, pattern=r"\S")]
    size_bytes: Annotated[int, Meta(description="The file's size; must be positive")]


class UploadRequest(Struct):
    files: Annotated[list[UploadFile], Meta(min_length=1, max_length=2)]


class JobRequest(Struct):
    voice_object: Annotated[Text, Meta(description="object_path of the uploaded voice")]
    source_language: Annotated[str, Meta(min_length=1, max_length=35, pattern=r"\S",
                                         description="ISO 639-1 code, or 'auto'")]
    target_languages: Annotated[list[LanguageCode], Meta(min_length=1)]
    background_object: Text | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\S")] | None = None


# -- responses ----------------------------------------------------------------------------------------


class ErrorDetail(Struct):
    code: str
    message: str


class Error(Struct):
    error: ErrorDetail


class UploadTicket(Struct):
    kind: InputKind
    object_path: str
    upload_url: Annotated[str, Meta(description="PUT the raw bytes with their Content-Type "
                                                "(or multipart with one file part).")]
    expires_at: Time


class UploadResponse(Struct):
    uploads: list[UploadTicket]


class Input(Struct):
    object_path: str
    content_type: str
    size_bytes: int
    sha256: str
    duration_seconds: float
    deleted_at: Annotated[Time | None, Meta(description="When the object was removed from storage: INPUT_TTL_HOURS "
                                                       "after the job finished, or when its owner deleted it")]


class Inputs(Struct):
    voice: Input
    background: Input | None


class TaskError(Struct):
    code: str
    message: str


class Task(Struct):
    id: str
    target_language: str
    stage: Stage
    progress: Annotated[float, Meta(ge=0, le=1)]
    attempts: int
    error: TaskError | None
    started_at: Time | None
    finished_at: Time | None
    usage: dict[str, float]


class Artifact(Struct):
    id: str
    kind: ArtifactKind
    target_language: str | None
    object_path: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: Time
    expires_at: Time


class DownloadableArtifact(Artifact):
    download_url: str
    download_expires_at: Time


class JobSummary(Struct):
    id: str
    status: JobStatus
    source_language: str
    created_at: Time
    updated_at: Time
    inputs: Inputs
    tasks: list[Task]


class Job(JobSummary):
    artifacts: list[Artifact]


class JobDeletion(Struct):
    """What `DELETE /v1/jobs/{id}` did: the job no longer exists for its owner, and neither do its files."""

    id: str
    deleted_at: Time
    cancelled_tasks: int
    artifacts_deleted: int
    inputs_deleted: int
    files_pending: Annotated[bool, Meta(description="True when storage could not be reached: the files left go "
                                                    "at the next retention run")]


class JobPage(Struct):
    jobs: list[JobSummary]
    next_cursor: str | None


class ArtifactList(Struct):
    artifacts: list[DownloadableArtifact]


class InputDownload(Input):
    kind: InputKind
    download_url: str
    download_expires_at: Time


class InputList(Struct):
    inputs: list[InputDownload]


class SourceLanguage(Struct):
    code: str
    targets: list[str]


class Detection(Struct):
    available: bool
    targets: list[str]


class LanguageCatalog(Struct):
    """What the installed engines can dub: each source with its targets, and language detection."""

    sources: list[SourceLanguage]
    detect: Detection


class StreamTicket(Struct):
    """A short-lived URL of the job's progress stream, for EventSource (which cannot send a token)."""

    url: str
    path: str
    expires_at: Annotated[int, Meta(description="Unix time")]


class LocalTokenRequest(Struct):
    user: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$",
                              description="a user name: letters, digits and . _ @ + - (up to 64)")]


class LocalUser(Struct):
    id: str


class LocalToken(Struct):
    access_token: str
    token_type: str
    expires_in: int
    expires_at: int
    user: LocalUser


class ProgressEvent(Struct, forbid_unknown_fields=False):
    """The `data:` of a progress-stream event (`event:` is its kind, `id:` its sequence number in the job).
    Besides these fields an event carries what its kind says: `stage_progress`, `error`, `artifact`,
    `status` (on `done`)."""

    job_id: str
    task_id: str | None
    target_language: str | None
    stage: Stage | None
    progress: Annotated[float, Meta(ge=0, le=1)] | None
    at: Time


class StorageError(Struct):
    """Supabase Storage's error body (the local signed-URL routes speak its wire format)."""

    statusCode: str
    code: str
    error: str
    message: str


class StorageKey(Struct):
    Key: str


REQUESTS: tuple[type[Struct], ...] = (UploadRequest, JobRequest, LocalTokenRequest)
RESPONSES: tuple[type[Struct], ...] = (Error, UploadResponse, Job, JobPage, ArtifactList, InputList,
                                       LanguageCatalog, StreamTicket, LocalToken, StorageError, StorageKey,
                                       ProgressEvent, JobDeletion)


# -- reading and answering ----------------------------------------------------------------------------

T = TypeVar("T", bound=Struct)

_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_AT = re.compile(r" - at `\$((?:\.[A-Za-z_]\w*|\[\d+\])*)`$")


def _field(path: str) -> str:
    names = re.findall(r"\.([A-Za-z_]\w*)", path)
    return names[-1] if names else "body"


def validation_error(exc: msgspec.ValidationError) -> ApiError:
    """The msgspec complaint as our error codes: `missing_field` or `invalid_field`, naming the field."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1) if at else ""
    detail = text[: at.start()] if at else text
    if missing := _MISSING.match(detail):
        return ApiError(422, ErrorCode.MISSING_FIELD, f"'{missing.group(1)}' is required")
    if not path:
        return bad_request(ErrorCode.INVALID_BODY, "The body must be a JSON object")
    return ApiError(422, ErrorCode.INVALID_FIELD, f"'{_field(path)}' is not valid: {detail[:1].lower()}{detail[1:]}")


async def read_body(request: Request, model: type[T]) -> T:
    """The request's JSON body decoded into `model`, or the 4xx that says what is wrong with it."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise ApiError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, ErrorCode.BODY_TOO_LARGE, f"The JSON body is larger than {MAX_JSON_BYTES} bytes")
    try:
        return msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from exc
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise bad_request(ErrorCode.MALFORMED_JSON, "The body is not valid JSON") from exc


_encoder = msgspec.json.Encoder()


def respond(data: Any, model: type[Struct], status_code: int = 200) -> Response:
    """Answer with `data` shaped (and checked) as `model`, the type the OpenAPI document names."""
    body = _encoder.encode(msgspec.convert(data, model, strict=False))
    return Response(body, status_code=status_code, media_type="application/json")
