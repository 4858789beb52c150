"""Supabase Storage over its REST API (`${SUPABASE_URL}/storage/v1`), every call through a `ProviderClient`.

The same interface as the local backend. The service key is sent as both `Authorization: Bearer` and
`apikey`, as supabase-py does, so calls bypass row-level security: callers check ownership themselves.

Errors. Storage answers almost every error with HTTP 400 and the real status as a *string* in the body,
`{"statusCode": "404", "code": "NoSuchKey", "error": "...", "message": "Object not found"}` (older servers
leave out `code`). `make_client` installs a response hook that reads such bodies and puts their status in
place of the 400 before `ProviderClient` looks at it, so a body saying 429, 503 or 544 is retried like a
real one and `ProviderError.status` is the real status. Bodies saying 408 or 409 keep their 400 (the shared
client would otherwise retry a duplicate-key conflict); `storage_error_from` recovers those from the code.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import anyio
import httpx
import jwt
import structlog

from service.errors import ErrorCode, ProviderError, StorageError
from service.providers.bodies import FileBody
from service.providers.http import ProviderClient, RetryPolicy
from service.providers.redaction import redact
from service.settings import Settings
from service.storage.base import ObjectInfo, SignedUrl
from service.storage.local import check_object_path

log = structlog.get_logger(__name__)

PROVIDER = "supabase-storage"
REQUEST_ID_HEADERS = ("sb-request-id", "x-request-id", "cf-ray")
# Signed upload URLs live 2 hours on the hosted service; the lifetime is not settable per request.
UPLOAD_URL_LIFETIME = timedelta(hours=2)
DELETE_BATCH = 1000  # the most names `DELETE /object/{bucket}` takes at once
CHUNK_SIZE = 1 << 16
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Every storage error code and the status the server means by it (src/internal/errors/codes.ts), plus the
# codes this module derives for bodies that carry none. Used when the wire status is a bare 400.
CODE_STATUS: dict[str, int] = {
    "NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchUpload": 404, "NoSuchCatalog": 404, "ShardNotFound": 404,
    "NotFoundException": 404,
    "InvalidJWT": 400, "InvalidRequest": 400, "TenantNotFound": 400, "InvalidBucketName": 400,
    "InvalidKey": 400, "InvalidRange": 400, "InvalidUploadId": 400, "InvalidSignature": 400,
    "ExpiredToken": 400, "MissingContentLength": 400, "MissingParameter": 400, "InvalidParameter": 400,
    "InvalidUploadSignature": 400, "InvalidChecksum": 400, "MissingPart": 400,
    "AccessDenied": 403, "SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403, "Unauthorized": 401,
    "ResourceAlreadyExists": 409, "KeyAlreadyExists": 409, "BucketAlreadyExists": 409, "Duplicate": 409,
    "ResourceNotEmpty": 409, "TransactionError": 409, "FeatureNotEnabled": 409, "NotSupported": 409,
    "ConflictException": 409,
    "EntityTooLarge": 413, "InvalidMimeType": 415, "ResourceLocked": 423, "TooManyRequests": 429,
    "InternalError": 500, "DatabaseError": 500, "Aborted": 500, "AbortedTerminate": 500, "NoAvailableShard": 500,
    "DatabaseConnectionLimit": 503, "DatabaseReadOnly": 503, "DatabaseInvalidObjectDefinition": 503,
    "DatabaseSchemaMismatch": 503, "LockTimeout": 503, "SlowDown": 503, "ServiceUnavailable": 503,
    "DatabaseTimeout": 544,
}

# Bodies whose status would make the shared client retry a failure that is final.
_KEEP_AS_400 = frozenset({408, 409})

# -- errors ------------------------------------------------------------------------------------


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        return None
    return data if isinstance(data, dict) else None


def _body_status(body: dict[str, Any] | None) -> int | None:
    raw = (body or {}).get("statusCode")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return None


def _derived_code(status: int, body: dict[str, Any]) -> str:
    """A code for bodies from older servers (and the gateway), which carry a status but no `code`."""
    text = f"{body.get('error', '')} {body.get('message', '')}".lower()
    if status == 404:
        return "NoSuchBucket" if "bucket" in text else "NoSuchKey"
    if status == 400:
        return "InvalidJWT" if "jwt" in text else "InvalidRequest"
    if status == 544:
        return "DatabaseTimeout"
    by_status = {401: "Unauthorized", 403: "AccessDenied", 409: "Duplicate", 413: "EntityTooLarge",
                 415: "InvalidMimeType", 423: "ResourceLocked", 429: "TooManyRequests", 500: "InternalError",
                 503: "ServiceUnavailable"}
    return by_status.get(status, f"http_{status}")


def parse_storage_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a storage error answer, secrets redacted.

    Handles `{"statusCode": "404", "code": "NoSuchKey", "message": ...}`, the same without `code`
    (a code is derived from the status), gateway bodies like `{"message": "Invalid API key"}`, and bodies
    that are empty (`HEAD` on a missing object) or not JSON.
    """
    body = _json_body(response)
    if body is None:
        try:
            text = response.text.strip()
        except httpx.ResponseNotRead:
            text = ""
        message = text[:300] or response.reason_phrase or f"HTTP {response.status_code} with an empty body"
        return f"http_{response.status_code}", redact(message)
    status = _body_status(body) or response.status_code
    code = body.get("code")
    if not isinstance(code, str) or not code:
        code = _derived_code(status, body)
    message = body.get("message") or body.get("error") or response.reason_phrase or f"HTTP {status}"
    return code, redact(str(message)[:300])


def _redacted(parsed: tuple[str, str], key: str) -> tuple[str, str]:
    code, message = parsed
    return code, redact(message, key)


def status_for_code(code: str) -> int | None:
    if code in CODE_STATUS:
        return CODE_STATUS[code]
    if code.startswith("http_") and code[5:].isdigit():
        return int(code[5:])
    return None


def storage_error_from(exc: ProviderError) -> StorageError:
    """Our StorageError with the status the server meant, not the 400 it sent."""
    message = redact(exc.message)
    if exc.request_id:
        message = f"{message} (request id {exc.request_id})"
    if exc.status is None:  # timeout or connection failure, after the retries
        return StorageError(503, exc.code, message)
    if exc.code == ErrorCode.MALFORMED_RESPONSE:
        return StorageError(502, exc.code, message)
    status = exc.status
    if status == 400:
        status = status_for_code(exc.code) or 400
    return StorageError(status, exc.code, message)


async def _promote_body_status(response: httpx.Response) -> None:
    """Response hook: a 400 whose body names another status gets that status (see the module docstring)."""
    if response.status_code != 400:
        return
    await response.aread()  # error bodies are small; the shared client reads them anyway
    status = _body_status(_json_body(response))
    if status is None or status == 400 or status in _KEEP_AS_400 or not 400 <= status <= 599:
        return
    log.debug("supabase_storage.status_from_body", wire_status=400, status=status)
    response.status_code = status


def install_status_hook(client: ProviderClient) -> None:
    """Idempotent: let the client see the status in storage's error bodies."""
    hooks = client.client.event_hooks
    if _promote_body_status not in hooks["response"]:
        client.client.event_hooks = {**hooks, "response": [*hooks["response"], _promote_body_status]}


@contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except ProviderError as exc:
        raise storage_error_from(exc) from exc


# -- client ------------------------------------------------------------------------------------


def make_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *, policy: RetryPolicy | None = None
) -> ProviderClient:
    if not settings.supabase_url or not settings.supabase_service_key:
        raise ValueError("Supabase Storage needs SUPABASE_URL and SUPABASE_SERVICE_KEY")
    key = settings.supabase_service_key
    client = ProviderClient(
        PROVIDER,
        f"{settings.supabase_url.rstrip('/')}/storage/v1",
        {"Authorization": f"Bearer {key}", "apikey": key},
        concurrency=settings.supabase_concurrency,
        max_connections=max(settings.supabase_concurrency, 1),
        policy=policy or RetryPolicy(),
        error_parser=lambda response: _redacted(parse_storage_error(response), key),
        request_id_headers=REQUEST_ID_HEADERS,
        transport=transport,
    )
    install_status_hook(client)
    return client


# -- helpers -----------------------------------------------------------------------------------


def quote_path(path: str) -> str:
    """URL-quote every segment of an object path, keeping the slashes."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def encode_uri(url: str) -> str:
    """Like JavaScript's encodeURI, but leaves existing %XX escapes alone.

    Storage returns signed URLs with the object path decoded (spaces and all); storage-js encodes them.
    """
    return quote(_LONE_PERCENT.sub("%25", url), safe="!#$&'()*+,/:;=?@~%-._")


def _token_expiry(token: str) -> datetime | None:
    """The `exp` of a token, read without verifying it (we only report it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        try:
            return datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _query_token(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("token", [""])[0]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_object_info(path: str, data: Any) -> ObjectInfo:
    """`GET /object/info` answers: fields at the top level (current servers: size, content_type, etag,
    last_modified; `metadata` is then the user's metadata) or inside `metadata` (older servers: size,
    mimetype, eTag, lastModified, with updated_at at the top)."""
    if not isinstance(data, dict):
        raise StorageError(502, ErrorCode.MALFORMED_RESPONSE, "Object info is not a JSON object")
    raw_meta = data.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}

    def pick(top: str, *nested: str) -> Any:
        if data.get(top) is not None:
            return data[top]
        for key in nested:
            if meta.get(key) is not None:
                return meta[key]
        return None

    size = pick("size", "size", "contentLength")
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    elif isinstance(size, float) and size.is_integer():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise StorageError(502, ErrorCode.MALFORMED_RESPONSE, "Object info has no size (is the upload finished?)")
    last_modified = (_parse_time(pick("last_modified", "lastModified")) or _parse_time(data.get("updated_at"))
                     or _parse_time(data.get("created_at")) or datetime.fromtimestamp(0, UTC))
    return ObjectInfo(
        path=path,
        size_bytes=size,
        content_type=str(pick("content_type", "mimetype", "contentType") or DEFAULT_CONTENT_TYPE),
        etag=str(pick("etag", "eTag", "etag") or ""),
        last_modified=last_modified,
    )


def _safe_suffix(path: str) -> str:
    suffix = PurePosixPath(path).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else ""


# -- the backend -------------------------------------------------------------------------------


class SupabaseStorage:
    """Objects live in one bucket; paths are relative to it, as with the local backend."""

    is_remote = True

    def __init__(self, client: ProviderClient, supabase_url: str, bucket: str,
                 scratch_dir: str | Path | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.storage_url = f"{supabase_url.rstrip('/')}/storage/v1"
        self.scratch_dir = Path(scratch_dir) if scratch_dir is not None else None
        install_status_hook(client)

    def _object(self, path: str) -> str:
        check_object_path(path)
        return f"{quote(self.bucket, safe='')}/{quote_path(path)}"

    def _absolute(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return encode_uri(url)
        return self.storage_url + encode_uri(url if url.startswith("/") else f"/{url}")

    async def _json(self, method: str, url: str, endpoint: str, **kwargs: Any) -> Any:
        with _storage_errors():
            return await self.client.json(method, url, endpoint=endpoint, **kwargs)

    async def _send(self, method: str, url: str, endpoint: str, **kwargs: Any) -> httpx.Response:
        with _storage_errors():
            return await self.client.send(method, url, endpoint=endpoint, **kwargs)

    @asynccontextmanager
    async def _stream(self, url: str, endpoint: str) -> AsyncIterator[httpx.Response]:
        with _storage_errors():
            async with self.client.stream("GET", url, endpoint=endpoint) as response:
                yield response

    # -- signed URLs ---------------------------------------------------------------------------
    async def create_upload_url(self, path: str, ttl_seconds: int, size_bytes: int | None = None) -> SignedUrl:
        """`ttl_seconds` is advisory: the hosted service signs upload URLs for 2 hours, whatever we ask.
        `expires_at` is the token's own `exp` (read unverified), else now + 2 h."""
        data = await self._json("POST", f"/object/upload/sign/{self._object(path)}", "storage.sign_upload")
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise StorageError(502, ErrorCode.MALFORMED_RESPONSE, "The signed upload URL answer has no url")
        token = data.get("token") if isinstance(data.get("token"), str) else _query_token(url)
        expires_at = _token_expiry(token) or datetime.now(UTC) + UPLOAD_URL_LIFETIME
        return SignedUrl(self._absolute(url), token, expires_at)

    async def create_download_url(
        self, path: str, ttl_seconds: int, download_name: str | None = None
    ) -> SignedUrl:
        ttl = max(int(ttl_seconds), 1)
        data = await self._json("POST", f"/object/sign/{self._object(path)}", "storage.sign_download",
                                json={"expiresIn": ttl})
        signed = (data.get("signedURL") or data.get("signedUrl")) if isinstance(data, dict) else None
        if not isinstance(signed, str) or not signed:
            raise StorageError(502, ErrorCode.MALFORMED_RESPONSE, "The signed download URL answer has no signedURL")
        url = self._absolute(signed)
        if download_name:
            url += ("&" if "?" in url else "?") + f"download={quote(download_name, safe='')}"
        token = _query_token(url)
        expires_at = _token_expiry(token) or datetime.now(UTC) + timedelta(seconds=ttl)
        return SignedUrl(url, token, expires_at)

    # -- objects -------------------------------------------------------------------------------
    async def stat(self, path: str) -> ObjectInfo | None:
        """The object's info, or None when there is no such object (a missing bucket still raises)."""
        try:
            data = await self._json("GET", f"/object/info/{self._object(path)}", "storage.info")
        except StorageError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        return parse_object_info(path, data)

    @asynccontextmanager
    async def local_copy(self, path: str) -> AsyncIterator[str]:
        """Stream the object into a temporary file (chunk by chunk) and yield its path; delete it after."""
        url = f"/object/authenticated/{self._object(path)}"
        scratch = self.scratch_dir
        if scratch is not None:
            await anyio.Path(scratch).mkdir(parents=True, exist_ok=True)
        fd, tmp = await anyio.to_thread.run_sync(
            lambda: tempfile.mkstemp(prefix="storage-", suffix=_safe_suffix(path), dir=scratch))
        os.close(fd)
        try:
            async with self._stream(url, "storage.download") as response:
                async with await anyio.open_file(tmp, "wb") as fh:
                    async for chunk in self._chunks(response, path, CHUNK_SIZE):
                        await fh.write(chunk)
            yield tmp
        finally:
            await anyio.Path(tmp).unlink(missing_ok=True)

    @staticmethod
    async def _chunks(response: httpx.Response, path: str, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes(chunk_size):
                yield chunk
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise StorageError(502, ErrorCode.DOWNLOAD_INTERRUPTED,
                               f"The download of {path[:100]!r} broke off: {type(exc).__name__}") from exc

    async def read(self, path: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        async with self._stream(f"/object/authenticated/{self._object(path)}", "storage.read") as response:
            async for chunk in self._chunks(response, path, chunk_size):
                yield chunk

    async def write_file(self, path: str, source_file: str, content_type: str) -> ObjectInfo:
        """Upload a finished local file, replacing what was there (`x-upsert`), streamed from disk.

        Retried like any call: the body is re-read from the file on each attempt. The answer carries
        no size or ETag, and no extra info call is made: size comes from the file, `etag` is "".
        """
        url = f"/object/{self._object(path)}"
        size = (await anyio.Path(source_file).stat()).st_size
        headers = {"Content-Type": content_type, "Content-Length": str(size), "x-upsert": "true"}
        await self._send("POST", url, "storage.upload", content=FileBody(source_file), headers=headers)
        return ObjectInfo(path=path, size_bytes=size, content_type=content_type, etag="",
                          last_modified=datetime.now(UTC))

    async def delete(self, paths: list[str]) -> list[str]:
        """Delete exact object names, ≤ 1000 per call; returns those that existed (the server leaves the
        rest out). A failing batch raises; batches before it stay deleted (deleting again is harmless)."""
        for path in paths:
            check_object_path(path)
        unique = list(dict.fromkeys(paths))
        deleted: list[str] = []
        for start in range(0, len(unique), DELETE_BATCH):
            batch = unique[start:start + DELETE_BATCH]
            rows = await self._json("DELETE", f"/object/{quote(self.bucket, safe='')}", "storage.delete",
                                    json={"prefixes": batch})
            names = {row.get("name") for row in rows if isinstance(row, dict)} if isinstance(rows, list) else set()
            deleted.extend(p for p in batch if p in names)
        return deleted

    async def check(self) -> str:
        """One cheap authenticated call for `doctor`: does the key work and the bucket exist?"""
        data = await self._json("GET", f"/bucket/{quote(self.bucket, safe='')}", "storage.bucket")
        if not isinstance(data, dict):
            raise StorageError(502, ErrorCode.MALFORMED_RESPONSE, "The bucket answer is not a JSON object")
        visibility = "PUBLIC (objects readable without a token)" if data.get("public") else "private"
        limit = data.get("file_size_limit") or "project default"
        types = data.get("allowed_mime_types") or "any"
        return (f"Supabase bucket {data.get('name', self.bucket)!r} at {self.storage_url}: {visibility}, "
                f"file size limit {limit}, allowed types {types}")


__all__ = [
    "CODE_STATUS",
    "SupabaseStorage",
    "install_status_hook",
    "make_client",
    "parse_object_info",
    "parse_storage_error",
    "redact",
    "storage_error_from",
]
