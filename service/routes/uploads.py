"""`POST /v1/uploads`: signed upload URLs, one per file, under the caller's own prefix."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.db import uploads
from service.db.uploads import Upload
from service.domain import InputKind
from service.errors import ApiError, ErrorCode
from service.routes.auth import current_user
from service.routes.models import UploadRequest, UploadResponse, read_body, respond
from service.routes.services import services
from service.settings import ALLOWED_VIDEO_TYPES, Settings


def accepted_types(settings: Settings, kind: str) -> tuple[str, ...]:
    """Audio for a voice or a background; audio or video for media (one mixed soundtrack, or a video)."""
    return settings.allowed_content_types + (ALLOWED_VIDEO_TYPES if kind == InputKind.MEDIA else ())


def unsupported_content_type(settings: Settings, content_type: str, kind: str = InputKind.VOICE) -> ApiError:
    what = "audio or video" if kind == InputKind.MEDIA else "audio"
    if content_type in ALLOWED_VIDEO_TYPES:  # a type the API takes, under the wrong kind: the request's fault
        return ApiError(422, ErrorCode.INVALID_FIELD,
                        f"'{content_type}' is a video: upload it as kind 'media', not '{kind}'")
    return ApiError(415, ErrorCode.UNSUPPORTED_CONTENT_TYPE,
                    f"'{content_type[:100]}' is not an accepted {what} type for '{kind}'; "
                    f"use one of {', '.join(accepted_types(settings, kind))}")


def check_content_type(settings: Settings, content_type: str, kind: str = InputKind.VOICE) -> str:
    """A stored object's type (its parameters and case aside) is one the service accepts for its kind."""
    base = content_type.split(";")[0].strip().lower()
    if base not in accepted_types(settings, kind):
        raise unsupported_content_type(settings, base, kind)
    return base


def size_limit(settings: Settings, kind: str) -> int:
    return settings.max_media_bytes if kind == InputKind.MEDIA else settings.max_upload_bytes


def check_size(settings: Settings, size: int, kind: str = InputKind.VOICE) -> int:
    if size <= 0:
        raise ApiError(422, ErrorCode.INVALID_FIELD, "'size_bytes' must be positive")
    limit = size_limit(settings, kind)
    if size > limit:
        what = "Media files" if kind == InputKind.MEDIA else "Files"
        raise ApiError(413, ErrorCode.FILE_TOO_LARGE, f"{what} may be at most {limit} bytes")
    return size


def safe_extension(filename: str) -> str:
    match = re.search(r"\.([A-Za-z0-9]{1,8})$", filename)
    return f".{match.group(1).lower()}" if match else ""


def upload_object_path(user_id: str, kind: str, filename: str) -> str:
    return f"{user_id}/uploads/{uuid.uuid4()}/{kind}{safe_extension(filename)}"


async def create_uploads(request: Request) -> Response:
    user = await current_user(request)
    svc = services(request)
    settings = svc.settings
    body = await read_body(request, UploadRequest)
    planned: list[Upload] = []
    for entry in body.files:
        if entry.content_type not in accepted_types(settings, entry.kind):  # as the OpenAPI enum says, per kind
            raise unsupported_content_type(settings, entry.content_type, entry.kind)
        size = check_size(settings, entry.size_bytes, entry.kind)
        filename = entry.filename.strip()
        path = upload_object_path(user.id, entry.kind, filename)
        planned.append(Upload(path, user.id, entry.kind, entry.content_type, size, filename))
    tickets: list[dict[str, Any]] = []
    expires_at = None
    for upload in planned:
        signed = await svc.storage.create_upload_url(
            upload.object_path, settings.upload_url_ttl_seconds, size_bytes=upload.declared_size_bytes)
        expires_at = signed.expires_at
        tickets.append({"kind": upload.kind, "object_path": upload.object_path, "upload_url": signed.url,
                        "expires_at": signed.expires_at.isoformat()})
    assert expires_at is not None
    await uploads.record(svc.db.pool, planned, expires_at)
    return respond({"uploads": tickets}, UploadResponse, status_code=201)
