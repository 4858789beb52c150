"""The API's request and response bodies, defined once as msgspec Structs.

The same definitions decode and check every request body (`read_body`), shape every JSON answer
(`respond`), and become the OpenAPI document's components (`routes/openapi.py`), so what the document
says and what the API does cannot drift apart. Enums come from `service.domain`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from service.domain import ArtifactKind, BackgroundMode, InputKind, JobStatus, Stage
from service.errors import ApiError, ErrorCode
from service.routes.errors import bad_request
from service.settings import ALLOWED_UPLOAD_TYPES

MAX_JSON_BYTES = 64 * 1024

# The patterns the API enforces (in the OpenAPI document too), each with the plain words an error message
# says instead: a person is never shown a regular expression.
NOT_BLANK = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
LANGUAGE_CODE = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$"
SOURCE_LANGUAGE = r"^(?:auto|[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)$"
DISPLAY_NAME = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
CURSOR = r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
PLAIN_RULES = {
    NOT_BLANK: "must not be blank, nor hold control characters",
    LANGUAGE_CODE: "must be a language code such as 'es' or 'pt-BR'",
    SOURCE_LANGUAGE: "must be a language code such as 'en', or 'auto'",
    DISPLAY_NAME: "must have a letter or a digit, and no control characters",
    CURSOR: "must be a cursor this API gave out (next_cursor)",
}

Text = Annotated[str, Meta(min_length=1, max_length=1024, pattern=NOT_BLANK)]
SpeakerId = Annotated[str, Meta(pattern=r"^S[1-8]$", description="S1, S2, ... in order of first appearance")]
LanguageCode = Annotated[str, Meta(min_length=2, max_length=35, pattern=LANGUAGE_CODE,
                                   description="ISO 639-1 code, optionally with a region: 'es', 'pt-BR'")]
Time = Annotated[str, Meta(description="ISO 8601 date-time, UTC")]
ContentType = Annotated[str, Meta(extra_json_schema={"enum": list(ALLOWED_UPLOAD_TYPES)},
                                  description="The file's type, one of those the service accepts (video "
                                              "types for kind `media` only)")]


# -- requests -----------------------------------------------------------------------------------------


class UploadFile(Struct, forbid_unknown_fields=False):
    kind: InputKind
    filename: Annotated[str, Meta(min_length=1, max_length=255, pattern=NOT_BLANK)]
    content_type: ContentType
    size_bytes: Annotated[int, Meta(ge=1, description="The file's size in bytes (at most the service's limit; an "
                                                      "upload of kind `media` has its own, MAX_MEDIA_BYTES, "
                                                      "larger than the maximum declared here)")]


class UploadRequest(Struct):
    files: Annotated[list[UploadFile], Meta(min_length=1, max_length=2)]


OfflineVoiceChoice = Literal["natural", "fast", "auto"]


class JobRequest(Struct):
    target_languages: Annotated[list[LanguageCode], Meta(min_length=1)]
    voice_object: Annotated[Text | None, Meta(description="object_path of the uploaded voice (or give "
                                                          "media_object)")] = None
    source_language: Annotated[str, Meta(min_length=2, max_length=35, pattern=SOURCE_LANGUAGE,
                                         description="ISO 639-1 code, or 'auto' (the default): detected from "
                                                     "the first minute of speech")] = "auto"
    background_object: Text | None = None
    offline_voice: Annotated[OfflineVoiceChoice, Meta(
        description="Offline mode's voice: 'natural' (Kokoro-82M, easier to understand, slower to dub), 'fast' "
                    "(espeak-ng) or 'auto' (the server's OFFLINE_VOICE for each language). A language the natural "
                    "voice does not speak gets the fast one; a cloud voice, when configured, ignores this")] = "auto"
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200, pattern=NOT_BLANK)] | None = None
    media_object: Annotated[Text | None, Meta(
        description="object_path of an uploaded video or mixed soundtrack (kind `media`), instead of "
                    "voice_object/background_object: the service separates voice and background itself")] = None
    start_seconds: Annotated[float, Meta(ge=0, description="media jobs: dub from here (default: the "
                                                            "start); before it the original plays")] | None = None
    end_seconds: Annotated[float, Meta(gt=0, description="media jobs: dub until here (default: the "
                                                          "end); after it the original plays")] | None = None
    background: Annotated[BackgroundMode | None, Meta(
        description="media jobs: keep the separated background under the dub (default) or drop it")] = None
    num_speakers: Annotated[int, Meta(ge=0, le=8, description="How many people speak (0, the default: found "
                                                               "out); each gets a voice of their own")] = 0
    voice_cloning: Annotated[bool, Meta(description="Clone each speaker's own voice (cloud TTS that can; only with "
                                                    "the speakers' consent)")] = False
    voices: Annotated[dict[SpeakerId, Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK)]],
                      Meta(max_length=8, description="A voice picked for some speakers: {\"S1\": \"<the TTS "
                                                     "engine's voice id>\"}")] = {}
    webhook_url: Annotated[str, Meta(min_length=1, max_length=2000, pattern="^https?://", description=(
        "Where the job's events (language.completed, job.completed, job.failed, job.cancelled) are POSTed, "
        "signed per Standard Webhooks; must resolve to a public address in cloud mode"))] | None = None


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
    filename: Annotated[str | None, Meta(description="The file's name on the uploader's computer (jobs made "
                                                     "before names were kept have none)")]
    content_type: str
    size_bytes: int
    sha256: str
    duration_seconds: float
    deleted_at: Annotated[Time | None, Meta(description="When the object was removed from storage: INPUT_TTL_HOURS "
                                                       "after the job finished, or when its owner deleted it")]


class Inputs(Struct):
    voice: Annotated[Input, Meta(description="The voice recording; for a media job, the uploaded media")]
    background: Input | None


class MediaOptions(Struct):
    """What a media job holds and asked for (null for a job made from a voice and a background)."""

    has_video: bool
    container: Annotated[str | None, Meta(description="mp4, mov, webm or mkv: the dubbed video's too")]
    start_seconds: float
    end_seconds: float
    background: BackgroundMode


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
    revision: Annotated[int, Meta(description="The language's revision it was rendered at (1: the first dub)")]
    object_path: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: Time
    expires_at: Time


class DownloadableArtifact(Artifact):
    download_url: str
    download_name: Annotated[str, Meta(description="The file's name when downloaded (input and language: "
                                                   "'interview_es.mp3'), also sent as Content-Disposition")]
    download_expires_at: Time


class DetectedLanguage(Struct):
    code: str
    confidence: Annotated[float | None, Meta(description="0..1; null when the engine gives none")]


class SpeakerSettings(Struct):
    num_speakers: int
    voice_cloning: bool
    voices: dict[str, str]


class JobSummary(Struct):
    id: str
    status: JobStatus
    source_language: str
    offline_voice: Annotated[OfflineVoiceChoice, Meta(description="What the job asked for (see JobRequest)")]
    detected_language: Annotated[DetectedLanguage | None, Meta(
        description="What the recogniser heard in the first minute of speech; null until transcription ran")]
    created_at: Time
    updated_at: Time
    speakers: SpeakerSettings
    inputs: Inputs
    tasks: list[Task]
    media: Annotated[MediaOptions | None, Meta(description="Null unless the job was made from media_object")]


class Job(JobSummary):
    artifacts: list[Artifact]


class UsagePeriod(Struct):
    """What the caller used in a UTC day or month: minutes of source audio times target languages."""

    start: Time
    minutes_used: float
    dubbed_minutes: Annotated[float, Meta(description="Of languages that completed")]
    languages: int
    jobs: int
    quota_minutes: Annotated[float | None, Meta(description="QUOTA_MINUTES_PER_DAY; null: unlimited")] = None
    minutes_left: float | None = None


class Usage(Struct):
    day: UsagePeriod
    month: UsagePeriod


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
    download_name: str
    download_expires_at: Time


class InputList(Struct):
    inputs: list[InputDownload]


class Route(Struct):
    """How one source reaches one target: directly, or through a pivot language (two translation steps)."""

    target: str
    pivot: Annotated[str | None, Meta(description="The language the translation goes through, e.g. 'es' for "
                                                  "fr->en offline; null for a direct pair")]
    quality: Annotated[str, Meta(description="A note on what to expect of this route")]


class SourceLanguage(Struct):
    code: str
    targets: list[str]
    routes: list[Route]


class Detection(Struct):
    available: bool
    targets: list[str]


class OfflineVoiceOptions(Struct):
    """Offline synthesis only: where a job's `offline_voice` (natural | fast) makes a difference."""

    natural: Annotated[list[str], Meta(description="Targets the natural voice (Kokoro-82M) speaks; the others "
                                                   "are always spoken by the fast one (espeak-ng)")]
    natural_by_default: Annotated[list[str], Meta(description="Targets `auto` speaks with the natural voice")]


class LanguageCatalog(Struct):
    """What the installed engines can dub: each source with its targets, and language detection."""

    sources: list[SourceLanguage]
    detect: Detection
    offline_voices: Annotated[OfflineVoiceOptions | None, Meta(
        description="The offline voices' choice, or null when a cloud voice speaks (the choice is ignored)")] = None


class StreamTicket(Struct):
    """A short-lived URL of the job's progress stream, for EventSource (which cannot send a token)."""

    url: str
    path: str
    expires_at: Annotated[int, Meta(description="Unix time")]


class LocalTokenRequest(Struct):
    user: Annotated[str, Meta(min_length=1, max_length=64, pattern=DISPLAY_NAME,
                              description="Your name as you want to see it: any letters, digits, spaces and "
                                          "punctuation, 1 to 64 characters")]


class LocalUser(Struct):
    id: Annotated[str, Meta(description="The user id the name maps to (the same name always maps to the same id)")]
    name: str


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


# -- editing a dub (transcript, translations, renders) -----------------------------------------------

SegmentText = Annotated[str, Meta(min_length=1, max_length=2000, pattern=NOT_BLANK)]
Speaker = Annotated[str, Meta(min_length=1, max_length=64, pattern=DISPLAY_NAME)]
Seconds = Annotated[float, Meta(ge=0, le=86400)]


class SegmentPatch(Struct):
    """Change one source segment: any of its text, timing (seconds) and speaker (null: nobody in particular)."""

    text: SegmentText | msgspec.UnsetType = msgspec.UNSET
    start: Seconds | msgspec.UnsetType = msgspec.UNSET
    end: Seconds | msgspec.UnsetType = msgspec.UNSET
    speaker: Speaker | msgspec.UnsetType | None = msgspec.UNSET


class SegmentSplit(Struct):
    """Cut a segment in two at `at` seconds; the texts of the halves (default: its words divided where the time
    falls)."""

    at: Seconds
    text_before: SegmentText | None = None
    text_after: SegmentText | None = None


class TranslationPatch(Struct):
    text: SegmentText


class AddLanguages(Struct):
    target_languages: Annotated[list[LanguageCode], Meta(min_length=1)]


class TranscriptSegment(Struct):
    id: int
    start: float
    end: float
    speaker: str | None
    text: str


class EditableTranscript(Struct):
    """The job's source transcript as people edit it; `revision` is its ETag (send it back as If-Match)."""

    revision: int
    language: str | None
    speakers: list[str]
    segments: list[TranscriptSegment]


class LanguageSegment(Struct):
    id: int
    source_text: str
    text: Annotated[str | None, Meta(description="null: not translated yet (a segment made by a split)")]
    edited: Annotated[bool, Meta(description="Written by a person: kept across renders until its source changes")]
    stale: Annotated[bool, Meta(description="The next render redoes it (source, text or timing changed)")]


class LanguageResource(Struct):
    """One language of a job as people edit it; `revision` is its ETag (If-Match), `output_revision` the revision
    its latest artifacts were rendered at."""

    revision: int
    output_revision: int | None
    stage: Stage
    segments: list[LanguageSegment]


class CaptionsApplied(Struct):
    """What an edited SRT/WebVTT changed: the cues whose text differed and the segments they changed."""

    revision: int
    changed_cues: list[int]
    changed_segments: list[int]


class RenderStarted(Struct):
    """A render under way (or none needed); follow it on the job's progress stream from `after_event`."""

    job_id: str
    target_language: str
    revision: int
    started: Annotated[bool, Meta(description="false: it was rendering already, or nothing changed")]
    after_event: Annotated[int, Meta(description="Open /events with Last-Event-ID set to this")]


class LanguagesAdded(Struct):
    job_id: str
    target_languages: list[str]
    after_event: int


class SegmentEdit(Struct):
    segment_id: int
    target_language: str | None
    revision: int
    editor: str
    action: str
    field: str
    old: str | None
    new: str | None
    at: Time


class SegmentHistory(Struct):
    edits: list[SegmentEdit]


REQUESTS: tuple[type[Struct], ...] = (UploadRequest, JobRequest, LocalTokenRequest, SegmentPatch, SegmentSplit,
                                      TranslationPatch, AddLanguages)
RESPONSES: tuple[type[Struct], ...] = (Error, UploadResponse, Job, JobPage, ArtifactList, InputList,
                                       LanguageCatalog, StreamTicket, LocalToken, StorageError, StorageKey,
                                       ProgressEvent, JobDeletion, EditableTranscript, LanguageResource,
                                       CaptionsApplied, RenderStarted, LanguagesAdded, SegmentHistory)


# -- reading and answering ----------------------------------------------------------------------------

T = TypeVar("T", bound=Struct)

_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_AT = re.compile(r" - at `(?:key` in `)?\$((?:\.[A-Za-z_]\w*|\[\d+\]|\[[^\]]*\])*)`$")
_TYPE_NAMES = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
               "array": "a list", "object": "an object", "null": "null"}
_WRONG_TYPE = re.compile(r"Expected `([\w |]+)`, got `(\w+)`")
_LENGTH = re.compile(r"Expected `(str|array|object)` of length (>=|<=) (\d+)")
_BOUND = re.compile(r"Expected `(?:int|float)` (>=|<=|>|<) (-?[\d.e+]+)")


def _field(path: str) -> str:
    names = re.findall(r"\.([A-Za-z_]\w*)", path)
    return names[-1] if names else "body"


def plain_rule(detail: str, choices: list[str] | None = None) -> str:
    """msgspec's complaint in plain words, without the regular expression or type syntax it may contain."""
    if "matching regex" in detail:
        for pattern, words in PLAIN_RULES.items():
            if repr(pattern) in detail:
                return words
        return "is not in the form it must have"
    if wrong := _WRONG_TYPE.match(detail):
        kinds = [_TYPE_NAMES.get(kind, kind) for kind in wrong.group(1).split(" | ")]
        return f"must be {' or '.join(kinds)}"
    if length := _LENGTH.match(detail):
        kind, bound, count = length.groups()
        unit = {"str": "character", "array": "item", "object": "entry"}[kind]
        least = bound == ">="
        if least and count == "1":
            return "must not be empty"
        return f"must have {'at least' if least else 'at most'} {count} {unit}{'' if count == '1' else 's'}"
    if bound := _BOUND.match(detail):
        words = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}[bound.group(1)]
        return f"must be {words} {bound.group(2)}"
    if detail.startswith("Invalid enum value"):
        return f"must be one of: {', '.join(choices)}" if choices else "is not one of the values it may take"
    return "is not valid"


def _enum_values(info: msgspec.inspect.Type, found: dict[str, list[str]], name: str = "") -> None:
    """Each request field that takes one of a few values, with those values (for error messages)."""
    if isinstance(info, msgspec.inspect.Metadata):
        _enum_values(info.type, found, name)
    elif isinstance(info, msgspec.inspect.ListType):
        _enum_values(info.item_type, found, name)
    elif isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            _enum_values(member, found, name)
    elif isinstance(info, msgspec.inspect.EnumType):
        found[name] = [str(member.value) for member in info.cls]
    elif isinstance(info, msgspec.inspect.StructType):
        for struct_field in info.fields:
            _enum_values(struct_field.type, found, struct_field.encode_name)


def validation_error(exc: msgspec.ValidationError) -> ApiError:
    """The msgspec complaint as our error codes: `missing_field` or `invalid_field`, naming the field, in words
    a person reads (no pattern, no type syntax)."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1) if at else ""
    detail = text[: at.start()] if at else text
    if missing := _MISSING.match(detail):
        return ApiError(422, ErrorCode.MISSING_FIELD, f"'{missing.group(1)}' is required")
    if not path:
        return bad_request(ErrorCode.INVALID_BODY, "The body must be a JSON object")
    name = _field(path)
    return ApiError(422, ErrorCode.INVALID_FIELD, f"'{name}' {plain_rule(detail, _CHOICES.get(name))}")


_CHOICES: dict[str, list[str]] = {}
for _model in REQUESTS:
    _enum_values(msgspec.inspect.type_info(_model), _CHOICES)


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
