"""`/v1/jobs`: the metadata notify that creates a job, and reading, listing, cancelling and deleting jobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import unicodedata
from pathlib import PurePosixPath
from typing import Any, TypeVar

import structlog
from starlette.requests import Request
from starlette.responses import Response

from service import languages, metrics, retention
from service.audio.media_probe import FAMILY_OF_TYPE, MediaProbe, check_decodes, probe_media
from service.audio.probe import ProbeResult, probe
from service.db import artifacts, jobs, uploads
from service.db.jobs import InputObject, MediaSpec, NewJob, SpeakerChoice
from service.domain import ArtifactKind, BackgroundMode, InputKind
from service.errors import (
    ApiError,
    AudioError,
    ErrorCode,
    IdempotencyConflict,
    ProviderError,
    QuotaExceeded,
    StorageError,
    UnsafeDestination,
)
from service.integrations import url_guard
from service.routes.auth import User, current_user
from service.routes.errors import bad_request, error_response, not_found, unprocessable
from service.routes.models import (
    CURSOR,
    ArtifactList,
    InputList,
    Job,
    JobDeletion,
    JobPage,
    JobRequest,
    read_body,
    respond,
)
from service.routes.requests import path_uuid, query_int
from service.routes.services import services
from service.routes.uploads import check_content_type, check_size
from service.settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")
CURSOR_FORM = re.compile(CURSOR)


# -- what downloads are called -------------------------------------------------------------------------

FALLBACK_STEM = "dub"
# What the artifact is, when its extension alone does not say it (two kinds share ".wav" and ".json").
_SUFFIX = {ArtifactKind.VOICE_STEM: "_voice", ArtifactKind.MANIFEST: "_manifest",
           ArtifactKind.TRANSCRIPT_JSON: "_transcript", ArtifactKind.TRANSCRIPT_SRT: "_transcript",
           ArtifactKind.TRANSCRIPT_VTT: "_transcript"}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]+')


def _clean(name: str) -> str:
    """A file name any system accepts: no separators, control or reserved characters, no leading dots."""
    return _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip(" ._")[:120]


def download_stem(input_name: str | None) -> str:
    """The input's name without its extension ("Interview 3.mp3" → "Interview 3")."""
    if not input_name:
        return FALLBACK_STEM
    base = PurePosixPath(input_name.replace("\\", "/")).name
    return _clean(base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base) or FALLBACK_STEM


def artifact_download_name(input_name: str | None, kind: str, language: str | None, object_path: str) -> str:
    """What a downloaded artifact is called: after the input and the language ("interview_es.mp3"), never the
    storage's own object name ("master.mp3"), so the files of two jobs or two languages do not collide. The name
    travels in the signed URL (`download=`); storage answers it with `Content-Disposition`."""
    extension = PurePosixPath(object_path).suffix
    language_part = f"_{language}" if language else ""
    return f"{download_stem(input_name)}{language_part}{_SUFFIX.get(ArtifactKind(kind), '')}{extension}"


def input_download_name(input_name: str | None, kind: str, object_path: str) -> str:
    """An input downloads under the name it was uploaded with."""
    cleaned = _clean(PurePosixPath((input_name or "").replace("\\", "/")).name) if input_name else ""
    return cleaned or f"{FALLBACK_STEM}_{kind}{PurePosixPath(object_path).suffix}"


def target_codes(requested: list[str], source: str | None) -> list[str]:
    """The requested target languages as codes, in order, each once; an unknown code or the source is a 422."""
    targets: list[str] = []
    for raw in requested:
        code = languages.normalize(raw)
        if code is None:
            raise unprocessable(ErrorCode.UNKNOWN_LANGUAGE, f"'{raw}' is not a language code we know")
        if code == source:
            raise unprocessable(ErrorCode.SAME_LANGUAGE, f"'{code}' is the source language; pick another target")
        if code not in targets:
            targets.append(code)
    return targets


def _languages(body: JobRequest, settings: Settings) -> tuple[str, list[str]]:
    raw_source = body.source_language.strip()
    source = languages.AUTO if raw_source.lower() == languages.AUTO else languages.normalize(raw_source)
    if source is None:
        raise unprocessable(ErrorCode.UNKNOWN_LANGUAGE, f"'{raw_source}' is not a language code we know")
    targets = target_codes(body.target_languages, source)
    if len(body.target_languages) > settings.max_target_languages:  # as the OpenAPI document's maxItems
        raise ApiError(422, ErrorCode.INVALID_FIELD,
                       f"'target_languages' may name at most {settings.max_target_languages} languages")
    return source, targets


async def _inspect(request: Request, user_id: str, field: str, path: str,
                   kind: InputKind = InputKind.VOICE) -> tuple[InputObject, MediaProbe | None]:
    """Check that an uploaded object is the caller's, of an allowed type and size, and decodes (a media object:
    as untrusted media, `audio/media_probe.py`)."""
    svc = services(request)
    settings, storage = svc.settings, svc.storage
    missing_object = unprocessable(ErrorCode.OBJECT_NOT_FOUND, f"'{field}' names no uploaded object of yours")
    if not path.startswith(f"{user_id}/"):
        raise missing_object
    upload = await uploads.find(svc.db.pool, user_id, path)
    if upload is None:
        raise missing_object
    if (upload.kind == InputKind.MEDIA) != (kind == InputKind.MEDIA):
        raise unprocessable(ErrorCode.INVALID_FIELD, f"'{field}' names an upload of kind '{upload.kind}'; "
                                                     f"{field} takes one of kind '{kind}'")
    try:
        info = await storage.stat(path)
    except StorageError as exc:
        raise missing_object from exc
    if info is None:
        raise missing_object
    content_type = check_content_type(settings, info.content_type, kind)
    check_size(settings, info.size_bytes, kind)
    if info.size_bytes != upload.declared_size_bytes:
        raise unprocessable(ErrorCode.UPLOAD_SIZE_MISMATCH, f"'{field}' has {info.size_bytes} bytes, not the "
                                                    f"{upload.declared_size_bytes} declared when it was uploaded")
    if kind == InputKind.MEDIA:
        found = await _probe_media(request, field, path, content_type)
        return InputObject(path, content_type, info.size_bytes, found.sha256, found.duration_seconds,
                           upload.filename), found
    loop = asyncio.get_running_loop()
    try:
        async with storage.local_copy(path) as local_path:
            # Probing has its own small lane of threads: it must not wait behind the pipeline's CPU work.
            result: ProbeResult = await loop.run_in_executor(svc.probe_lane, probe, local_path)
    except StorageError as exc:
        if exc.status == 404:
            raise missing_object from exc
        raise ApiError(503, ErrorCode.STORAGE_UNAVAILABLE, "Storage could not be read; try again") from exc
    except AudioError as exc:  # ffprobe itself failed or ran past its time limit: the file is not usable audio
        raise unprocessable(ErrorCode.AUDIO_UNDECODABLE, f"'{field}' does not decode as audio") from exc
    if not result.ok:
        raise unprocessable(ErrorCode.AUDIO_UNDECODABLE, f"'{field}' does not decode as audio: {result.reason}")
    if result.duration_seconds < settings.min_input_seconds:
        raise unprocessable(ErrorCode.AUDIO_TOO_SHORT, f"'{field}' lasts {result.duration_seconds:.2f} s; "
                                               f"send at least {settings.min_input_seconds:g} s of audio")
    return InputObject(path, content_type, info.size_bytes, result.sha256, result.duration_seconds,
                       upload.filename), None


async def _probe_media(request: Request, field: str, path: str, content_type: str) -> MediaProbe:
    """Probe, check the limits, then decode the soundtrack through to its end (a truncated file is refused)."""
    svc = services(request)
    settings = svc.settings
    loop = asyncio.get_running_loop()
    try:
        async with svc.storage.local_copy(path) as local_path:
            found: MediaProbe = await loop.run_in_executor(svc.probe_lane, probe_media, local_path, content_type)
            if found.ok and settings.min_input_seconds <= found.duration_seconds <= settings.max_media_seconds:
                broken = await loop.run_in_executor(svc.probe_lane, check_decodes, local_path,
                                                    found.duration_seconds)
                if broken:
                    raise unprocessable(ErrorCode.INVALID_MEDIA, f"'{field}' cannot be dubbed: {broken}")
    except StorageError as exc:
        if exc.status == 404:
            raise unprocessable(ErrorCode.OBJECT_NOT_FOUND, f"'{field}' names no uploaded object of yours") from exc
        raise ApiError(503, ErrorCode.STORAGE_UNAVAILABLE, "Storage could not be read; try again") from exc
    except AudioError as exc:
        raise unprocessable(ErrorCode.INVALID_MEDIA, f"'{field}' could not be read as media") from exc
    if not found.ok:
        raise unprocessable(ErrorCode.INVALID_MEDIA, f"'{field}' cannot be dubbed: {found.reason}")
    if found.duration_seconds < settings.min_input_seconds:
        raise unprocessable(ErrorCode.AUDIO_TOO_SHORT, f"'{field}' lasts {found.duration_seconds:.2f} s; "
                                               f"send at least {settings.min_input_seconds:g} s")
    if found.duration_seconds > settings.max_media_seconds:
        raise unprocessable(ErrorCode.MEDIA_TOO_LONG, f"'{field}' lasts {found.duration_seconds:.0f} s; media "
                                              f"may last at most {settings.max_media_seconds:g} s")
    return found


def _media_spec(body: JobRequest, found: MediaProbe, content_type: str) -> MediaSpec:
    duration = found.duration_seconds
    start = body.start_seconds or 0.0
    end = min(body.end_seconds, duration) if body.end_seconds is not None else duration
    if start >= duration:
        raise unprocessable(ErrorCode.INVALID_WINDOW, f"'start_seconds' ({start:g}) is past the media's end "
                                                      f"({duration:.2f} s)")
    return MediaSpec(has_video=found.has_video, container=FAMILY_OF_TYPE.get(content_type) if found.has_video
                     else None, start_seconds=round(start, 3), end_seconds=round(end, 3),
                     background=str(body.background or BackgroundMode.KEEP), video=found.video_json(),
                     audio_codec=found.audio_codec)


def _check_media_request(body: JobRequest) -> None:
    """A job is made from a voice (and a background), or from one media object, never both; the media options
    need media, and the window must be one."""
    if body.media_object is not None and (body.voice_object is not None or body.background_object is not None):
        raise unprocessable(ErrorCode.INVALID_FIELD, "Give 'media_object' alone, or 'voice_object' (with "
                                                     "'background_object'), not both")
    if body.media_object is None and body.voice_object is None:
        raise unprocessable(ErrorCode.MISSING_FIELD, "Object missing required field `voice_object` (or give "
                                                     "`media_object`)")
    if body.media_object is None and (body.start_seconds is not None or body.end_seconds is not None
                                      or body.background is not None):
        raise unprocessable(ErrorCode.INVALID_FIELD, "'start_seconds', 'end_seconds' and 'background' are for "
                                                     "jobs made from 'media_object'")
    if body.start_seconds is not None and body.end_seconds is not None and body.start_seconds >= body.end_seconds:
        raise unprocessable(ErrorCode.INVALID_WINDOW, "'start_seconds' must be before 'end_seconds'")


def _request_hash(voice: str, background: str | None, source: str, targets: list[str],
                  offline_voice: str = "auto", media: list[object] | None = None,
                  speakers: SpeakerChoice | None = None, webhook_url: str | None = None) -> str:
    fields: list[Any] = [voice, background, source, sorted(targets)]
    if offline_voice != "auto":  # jobs made before the choice existed keep their hash
        fields.append(offline_voice)
    if media:  # a media job: its object, window and background choice
        fields.append(media)
    if speakers is not None and speakers != SpeakerChoice():  # jobs made before speakers keep their hash
        fields.append(speakers.to_json())
    if webhook_url:
        fields.append(webhook_url)
    canonical = json.dumps(fields)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _webhook_url(settings: Settings, raw: str | None) -> str | None:
    """The job's webhook URL, checked now (SSRF guard; again at every delivery): 422 when it may not be used."""
    if raw is None:
        return None
    if not settings.webhook_secret:
        raise unprocessable(ErrorCode.WEBHOOKS_DISABLED,
                            "This service has no WEBHOOK_SECRET: it cannot sign webhooks, so it takes none")
    try:
        await url_guard.check(raw.strip(), settings.webhook_allow_private)
    except UnsafeDestination as exc:
        raise unprocessable(ErrorCode.INVALID_WEBHOOK_URL, exc.message) from exc
    return raw.strip()


def _billing_customer(settings: Settings, user: User) -> str | None:
    """The Stripe customer the caller's token names (STRIPE_CUSTOMER_CLAIM), if it names one."""
    return user.claim(settings.stripe_customer_claim) if settings.stripe_customer_claim else None


def _quota_refused(exc: QuotaExceeded) -> Response:
    """429 with Retry-After (seconds until the quota renews) and what is left, in the message and a header."""
    return error_response(429, exc.code, exc.message, headers={
        "Retry-After": str(exc.retry_after_seconds), "X-Quota-Minutes-Left": f"{exc.left_minutes:.2f}"})


async def create_job(request: Request) -> Response:
    user = await current_user(request)
    svc = services(request)
    settings, pool = svc.settings, svc.db.pool
    body = await read_body(request, JobRequest)
    _check_media_request(body)
    media_path = body.media_object.strip() if body.media_object else None
    voice_path = media_path or (body.voice_object or "").strip()
    background_path = body.background_object.strip() if body.background_object else None
    source, targets = _languages(body, settings)
    idempotency_key = body.idempotency_key.strip() if body.idempotency_key else None
    check = svc.language_check
    if check is not None and (problem := check(source, targets)):
        raise unprocessable(ErrorCode.UNSUPPORTED_LANGUAGE, problem)
    speakers = SpeakerChoice(body.num_speakers, body.voice_cloning, {k: v.strip() for k, v in body.voices.items()})
    if speakers.num_speakers and any(int(k[1:]) > speakers.num_speakers for k in speakers.voices):
        raise ApiError(422, ErrorCode.INVALID_FIELD,
                       f"'voices' names a speaker past the {speakers.num_speakers} of 'num_speakers'")
    media_request: list[object] | None = None if media_path is None else [body.start_seconds, body.end_seconds,
                                                                          str(body.background or BackgroundMode.KEEP)]
    webhook_url = await _webhook_url(settings, body.webhook_url)
    request_hash = _request_hash(voice_path, background_path, source, targets, body.offline_voice, media_request,
                                 speakers, webhook_url)

    if idempotency_key is not None:
        try:
            existing = await jobs.by_idempotency_key(pool, user.id, idempotency_key, request_hash)
        except IdempotencyConflict as exc:
            raise ApiError(409, ErrorCode.IDEMPOTENCY_CONFLICT, exc.message) from exc
        if existing is not None:
            return respond(_job_found(await jobs.representation(pool, user.id, existing)).to_json(), Job)

    media: MediaSpec | None = None
    if media_path is not None:
        voice, found = await _inspect(request, user.id, "media_object", media_path, InputKind.MEDIA)
        assert found is not None
        media = _media_spec(body, found, voice.content_type)
    else:
        voice, _ = await _inspect(request, user.id, "voice_object", voice_path)
    background = (
        (await _inspect(request, user.id, "background_object", background_path))[0] if background_path else None
    )
    new_job = NewJob(user.id, source, targets, voice, background, idempotency_key, request_hash, media,
                     offline_voice=body.offline_voice, speakers=speakers, webhook_url=webhook_url,
                     billing_customer=_billing_customer(settings, user),
                     quota_minutes_per_day=settings.quota_minutes_per_day)
    try:
        job_id, created = await jobs.create(pool, new_job)
    except IdempotencyConflict as exc:
        raise ApiError(409, ErrorCode.IDEMPOTENCY_CONFLICT, exc.message) from exc
    except QuotaExceeded as exc:
        return _quota_refused(exc)
    if created:  # committed: QUEUE_BACKEND=dramatiq sends its tasks' messages now
        await svc.dispatch.job_created(job_id)
    shown = _job_found(await jobs.representation(pool, user.id, job_id)).to_json()
    return respond(shown, Job, status_code=201 if created else 200)


async def list_jobs(request: Request) -> Response:
    user = await current_user(request)
    limit = query_int(request, "limit", 20, 1, 100)
    cursor = request.query_params.get("cursor")
    if cursor is not None and not CURSOR_FORM.fullmatch(cursor):
        raise bad_request(ErrorCode.INVALID_CURSOR,
                          "The cursor is not one this API gave out: send next_cursor as it came")
    page, next_cursor = await jobs.list_for_owner(services(request).db.pool, user.id, limit, cursor)
    return respond({"jobs": [job.to_json() for job in page], "next_cursor": next_cursor}, JobPage)


def _job_found(found: T | None) -> T:
    """What a query of the caller's job returned, or 404: a job of someone else's does not exist for them."""
    if found is None:
        raise not_found("Job not found")
    return found


async def get_job(request: Request) -> Response:
    user = await current_user(request)
    job = _job_found(await jobs.representation(services(request).db.pool, user.id, path_uuid(request)))
    return respond(job.to_json(), Job)


async def list_artifacts(request: Request) -> Response:
    user = await current_user(request)
    svc = services(request)
    job_id = path_uuid(request)
    owned, voice_name = await jobs.voice_filename(svc.db.pool, user.id, job_id)
    if not owned:
        raise not_found("Job not found")
    revision = query_int(request, "revision", 0, 1, 1_000_000) or None
    listed = []
    for artifact in await artifacts.for_job(svc.db.pool, job_id, revision):
        name = artifact_download_name(voice_name, artifact.kind, artifact.target_language, artifact.object_path)
        signed = await svc.storage.create_download_url(artifact.object_path, svc.settings.download_url_ttl_seconds,
                                                       name)
        listed.append({**artifact.to_json(), "download_url": signed.url, "download_name": name,
                       "download_expires_at": signed.expires_at.isoformat()})
    return respond({"artifacts": listed}, ArtifactList)


async def job_inputs(request: Request) -> Response:
    user = await current_user(request)
    svc = services(request)
    job = _job_found(await jobs.representation(svc.db.pool, user.id, path_uuid(request))).job
    listed = []
    for kind, item in job.to_json()["inputs"].items():
        if item is None or item["deleted_at"] is not None:  # removed by retention: nothing to sign
            continue
        name = input_download_name(item["filename"], kind, item["object_path"])
        signed = await svc.storage.create_download_url(item["object_path"], svc.settings.download_url_ttl_seconds,
                                                       name)
        listed.append({"kind": kind, **item, "download_url": signed.url, "download_name": name,
                       "download_expires_at": signed.expires_at.isoformat()})
    return respond({"inputs": listed}, InputList)


async def cancel_job(request: Request) -> Response:
    user = await current_user(request)
    pool = services(request).db.pool
    job_id = path_uuid(request)
    cancelled = _job_found(await jobs.cancel(pool, user.id, job_id))
    metrics.task_finished("cancelled", count=cancelled)
    return respond(_job_found(await jobs.representation(pool, user.id, job_id)).to_json(), Job)


async def delete_job(request: Request) -> Response:
    """Cancel what still runs (the same transition as cancelling), then delete every file of the job now: its
    artifacts, its inputs and its scratch. The row stays for operators, marked; for its owner the job is gone."""
    user = await current_user(request)
    svc = services(request)
    job_id = path_uuid(request)
    deletion = _job_found(await jobs.delete(svc.db.pool, user.id, job_id))
    metrics.task_finished("cancelled", count=deletion.cancelled_tasks)
    try:
        removed = await retention.delete_job_files(svc.db.pool, svc.storage, svc.settings.scratch_dir, job_id)
    except (StorageError, ProviderError) as exc:
        log.warning("job.files_pending", job_id=str(job_id), error=str(exc))
        removed, pending = retention.JobFilesRemoved(0, 0), True
    else:
        pending = False
    return respond({"id": str(job_id), "deleted_at": deletion.deleted_at.isoformat(),
                    "cancelled_tasks": deletion.cancelled_tasks, "artifacts_deleted": removed.artifacts,
                    "inputs_deleted": removed.inputs, "files_pending": pending}, JobDeletion)
