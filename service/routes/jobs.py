"""`/v1/jobs`: the metadata notify that creates a job, and reading, listing and cancelling jobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import artifacts, jobs, languages
from service.audio.probe import ProbeResult, probe
from service.auth import current_user
from service.errors import ApiError, bad_request, not_found, unprocessable
from service.jobs import IdempotencyConflict, InputObject, NewJob
from service.routes.uploads import check_content_type, check_size
from service.settings import Settings
from service.storage import StorageError
from service.validation import invalid, missing, optional_str, path_uuid, query_int, read_json_object, required_str


def _languages(body: dict[str, Any], settings: Settings) -> tuple[str, list[str]]:
    raw_source = required_str(body, "source_language", 35)
    source = languages.AUTO if raw_source.lower() == languages.AUTO else languages.normalize(raw_source)
    if source is None:
        raise unprocessable("unknown_language", f"'{raw_source}' is not a language code we know")
    raw_targets = body.get("target_languages")
    if raw_targets is None:
        raise missing("target_languages")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise invalid("target_languages", "must be a non-empty list of language codes")
    targets: list[str] = []
    for raw in raw_targets:
        code = languages.normalize(raw)
        if code is None:
            raise unprocessable("unknown_language", f"'{raw}' is not a language code we know")
        if code == source:
            raise unprocessable("same_language", f"'{code}' is the source language; pick another target")
        if code not in targets:
            targets.append(code)
    if len(targets) > settings.max_target_languages:
        raise invalid("target_languages", f"may name at most {settings.max_target_languages} languages")
    return source, targets


async def _inspect(request: Request, user_id: str, field: str, path: str) -> InputObject:
    """Check that an uploaded object is the caller's, of an allowed type and size, and decodes."""
    settings: Settings = request.app.state.settings
    storage = request.app.state.storage
    missing_object = unprocessable("object_not_found", f"'{field}' names no uploaded object of yours")
    if not path.startswith(f"{user_id}/"):
        raise missing_object
    try:
        info = await storage.stat(path)
    except StorageError as exc:
        raise missing_object from exc
    if info is None:
        raise missing_object
    content_type = check_content_type(settings, info.content_type)
    check_size(settings, info.size_bytes)
    loop = asyncio.get_running_loop()
    try:
        async with storage.local_copy(path) as local_path:
            result: ProbeResult = await loop.run_in_executor(request.app.state.executor, probe, local_path)
    except StorageError as exc:
        if exc.status == 404:
            raise missing_object from exc
        raise ApiError(503, "storage_unavailable", "Storage could not be read; try again") from exc
    if not result.ok:
        raise unprocessable("audio_undecodable", f"'{field}' does not decode as audio: {result.reason}")
    return InputObject(path, content_type, info.size_bytes, result.sha256, result.duration_seconds)


def _request_hash(voice: str, background: str | None, source: str, targets: list[str]) -> str:
    canonical = json.dumps([voice, background, source, sorted(targets)])
    return hashlib.sha256(canonical.encode()).hexdigest()


async def create_job(request: Request) -> Response:
    user = await current_user(request)
    settings: Settings = request.app.state.settings
    pool = request.app.state.pool
    body = await read_json_object(request)
    voice_path = required_str(body, "voice_object")
    background_path = optional_str(body, "background_object")
    source, targets = _languages(body, settings)
    idempotency_key = optional_str(body, "idempotency_key", 200)
    check = request.app.state.language_check
    if check is not None and (problem := check(source, targets)):
        raise unprocessable("unsupported_language", problem)
    request_hash = _request_hash(voice_path, background_path, source, targets)

    if idempotency_key is not None:
        existing = await pool.fetchrow(
            "SELECT id, request_hash FROM jobs WHERE owner_id = $1 AND idempotency_key = $2",
            user.id,
            idempotency_key,
        )
        if existing is not None:
            if existing["request_hash"] != request_hash:
                raise ApiError(409, "idempotency_conflict", "This idempotency key was used for another request")
            return JSONResponse(await jobs.representation(pool, user.id, existing["id"]), status_code=200)

    voice = await _inspect(request, user.id, "voice_object", voice_path)
    background = (
        await _inspect(request, user.id, "background_object", background_path) if background_path else None
    )
    new_job = NewJob(user.id, source, targets, voice, background, idempotency_key, request_hash)
    try:
        job_id, created = await jobs.create(pool, new_job)
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", "This idempotency key was used for another request") from exc
    return JSONResponse(await jobs.representation(pool, user.id, job_id), status_code=201 if created else 200)


async def list_jobs(request: Request) -> Response:
    user = await current_user(request)
    limit = query_int(request, "limit", 20, 1, 100)
    cursor = request.query_params.get("cursor") or None
    try:
        page, next_cursor = await jobs.list_for_owner(request.app.state.pool, user.id, limit, cursor)
    except (ValueError, TypeError) as exc:
        raise bad_request("invalid_cursor", "The cursor is not one this API gave out") from exc
    return JSONResponse({"jobs": page, "next_cursor": next_cursor})


async def get_job(request: Request) -> Response:
    user = await current_user(request)
    job = await jobs.representation(request.app.state.pool, user.id, path_uuid(request))
    if job is None:
        raise not_found("Job not found")
    return JSONResponse(job)


async def list_artifacts(request: Request) -> Response:
    user = await current_user(request)
    pool = request.app.state.pool
    job_id = path_uuid(request)
    if not await jobs.owned(pool, user.id, job_id):
        raise not_found("Job not found")
    settings: Settings = request.app.state.settings
    storage = request.app.state.storage
    listed = []
    for artifact in await artifacts.for_job(pool, job_id):
        name = artifact["object_path"].rsplit("/", 1)[-1]
        signed = await storage.create_download_url(artifact["object_path"], settings.download_url_ttl_seconds, name)
        listed.append({**artifact, "download_url": signed.url, "download_expires_at": signed.expires_at.isoformat()})
    return JSONResponse({"artifacts": listed})


async def cancel_job(request: Request) -> Response:
    user = await current_user(request)
    pool = request.app.state.pool
    job_id = path_uuid(request)
    if not await jobs.cancel(pool, user.id, job_id):
        raise not_found("Job not found")
    return JSONResponse(await jobs.representation(pool, user.id, job_id))
