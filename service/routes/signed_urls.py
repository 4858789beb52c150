"""The local storage backend's signed-URL endpoints, on Supabase Storage's paths and wire format.

`PUT /storage/v1/object/upload/sign/{bucket}/{path}?token=…` takes the raw bytes with their
`Content-Type` (or multipart with one file part) and answers `{"Key": "bucket/path"}`;
`GET /storage/v1/object/sign/{bucket}/{path}?token=…` serves the bytes with Range support.
Errors use Storage's body, `{"statusCode": "<status>", "error", "message"}`, with the real status.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from service.errors import StorageError
from service.routes.services import services
from service.settings import ALLOWED_VIDEO_TYPES
from service.storage.local import LocalStorage
from service.storage.tokens import DOWNLOAD, UPLOAD, StorageClaims

_ERROR_NAMES = {400: "Bad Request", 403: "Forbidden", 404: "not_found", 409: "Duplicate",
                413: "Payload too large", 415: "invalid_mime_type", 416: "Range Not Satisfiable"}


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII `filename` for old clients and the exact UTF-8 `filename*` (RFC 6266)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r'[^A-Za-z0-9._ ()+,-]+', "_", ascii_name).strip() or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def storage_error(exc: StorageError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"statusCode": str(exc.status), "code": exc.code, "error": _ERROR_NAMES.get(exc.status, "Error"),
         "message": exc.message},
        status_code=exc.status, headers=headers,
    )


def _target(request: Request, scope: str) -> tuple[LocalStorage, str, StorageClaims]:
    storage = services(request).storage
    if not isinstance(storage, LocalStorage):  # with Supabase Storage, browsers talk to Supabase
        raise StorageError(404, "NotFound", "Signed URLs of this server are not in use")
    bucket = request.path_params["bucket"]
    path = request.path_params["path"]
    token = request.query_params.get("token")
    if not token:
        raise StorageError(400, "InvalidJWT", "Missing token")
    return storage, path, storage.verify_token(bucket, path, token, scope)


async def _file_part(request: Request, max_bytes: int) -> tuple[AsyncIterator[bytes], str]:
    form = await request.form(max_files=1, max_fields=4)
    parts = [v for v in form.values() if not isinstance(v, str)]
    if len(parts) != 1:
        raise StorageError(400, "InvalidRequest", "Send exactly one file part")
    upload = parts[0]
    content_type = str(form.get("contentType") or upload.content_type or "")

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await upload.read(1 << 16):
                yield chunk
        finally:
            await form.close()

    return chunks(), content_type


async def upload_to_signed_url(request: Request) -> Response:
    settings = services(request).settings
    try:
        # A signed upload URL writes once: the token says whether it may overwrite (ours never do), and an
        # `x-upsert` header cannot change that. Its declared size is bound into it as well.
        storage, path, claims = _target(request, UPLOAD)
        largest = max(settings.max_upload_bytes, settings.max_media_bytes)  # the API checked the kind's own limit
        limit = min(largest, claims.size) if claims.size is not None else settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise StorageError(413, "EntityTooLarge", "The object exceeded the maximum allowed size")
        header_type = request.headers.get("content-type", "")
        if header_type.startswith("multipart/form-data"):
            chunks, content_type = await _file_part(request, largest)
        else:
            chunks, content_type = request.stream(), header_type
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in settings.allowed_content_types + ALLOWED_VIDEO_TYPES:  # the bucket's types
            raise StorageError(415, "InvalidMimeType", f"mime type {content_type or '(none)'} is not supported")
        await storage.receive(path, chunks, content_type, limit, upsert=claims.upsert, exact_bytes=claims.size)
    except StorageError as exc:
        return storage_error(exc)
    return JSONResponse({"Key": f"{storage.bucket}/{path}"})


async def download_from_signed_url(request: Request) -> Response:
    try:
        storage, path, _claims = _target(request, DOWNLOAD)
        info = await storage.stat(path)
        if info is None:
            raise StorageError(404, "NoSuchKey", "Object not found")
    except StorageError as exc:
        return storage_error(exc)
    if request.headers.get("if-none-match") == info.etag:
        return Response(status_code=304, headers={"ETag": info.etag})
    headers = {"ETag": info.etag, "Cache-Control": "private, max-age=3600"}
    download = request.query_params.get("download")
    if download is not None:
        name = download or path.rsplit("/", 1)[-1]
        headers["Content-Disposition"] = content_disposition(name)
    return FileResponse(storage.file_path(path), media_type=info.content_type, headers=headers,
                        stat_result=None)
