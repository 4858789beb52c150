"""Local-disk storage whose signed URLs point at this app and speak Supabase's wire format.

Objects live at `<root>/<bucket>/<path>`, their content type at `<root>/.meta/<bucket>/<path>.json`.
Every write goes to a temporary file beside its target and is renamed into place, so a reader
never sees half an object.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import anyio

from service import scratch
from service.errors import StorageError
from service.storage import tokens
from service.storage.base import ObjectInfo, SignedUrl

MAX_PATH_LENGTH = 1024


def check_object_path(path: str) -> str:
    """Reject anything that could name a file outside the bucket."""
    if not path or len(path) > MAX_PATH_LENGTH or path.startswith("/") or "\\" in path or "\x00" in path:
        raise StorageError(400, "InvalidKey", f"Invalid key: {path[:100]!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or any(p.startswith(".meta") for p in parts[:1]):
        raise StorageError(400, "InvalidKey", f"Invalid key: {path[:100]!r}")
    return path


class LocalStorage:
    is_remote = False
    def __init__(self, root: Path, bucket: str, public_base_url: str, service_secret: str) -> None:
        self.root = root.resolve()
        self.bucket = bucket
        self.public_base_url = public_base_url.rstrip("/")
        self.key = tokens.storage_key(service_secret)
        (self.root / bucket).mkdir(parents=True, exist_ok=True)

    # -- paths -------------------------------------------------------------------------------
    def file_path(self, path: str) -> Path:
        check_object_path(path)
        bucket_dir = self.root / self.bucket
        target = (bucket_dir / path).resolve()
        if not target.is_relative_to(bucket_dir):
            raise StorageError(400, "InvalidKey", "Invalid key")
        return target

    def _meta_path(self, path: str) -> Path:
        return self.root / ".meta" / self.bucket / f"{path}.json"

    def _url(self, kind: str, path: str, token: str, download_name: str | None = None) -> str:
        url = f"{self.public_base_url}/storage/v1/object/{kind}/{self.bucket}/{quote(path)}?token={token}"
        if download_name:
            url += f"&download={quote(download_name)}"
        return url

    # -- signed URLs ---------------------------------------------------------------------------
    async def create_upload_url(self, path: str, ttl_seconds: int, size_bytes: int | None = None) -> SignedUrl:
        """A write-once URL for `path`; with `size_bytes`, only a body of exactly that size is taken."""
        check_object_path(path)
        token, exp = tokens.sign(self.key, self.bucket, path, tokens.UPLOAD, ttl_seconds, size=size_bytes)
        return SignedUrl(self._url("upload/sign", path, token), token, datetime.fromtimestamp(exp, UTC))

    async def create_download_url(
        self, path: str, ttl_seconds: int, download_name: str | None = None
    ) -> SignedUrl:
        check_object_path(path)
        token, exp = tokens.sign(self.key, self.bucket, path, tokens.DOWNLOAD, ttl_seconds)
        return SignedUrl(
            self._url("sign", path, token, download_name), token, datetime.fromtimestamp(exp, UTC)
        )

    def verify_token(self, bucket: str, path: str, token: str, scope: str) -> tokens.StorageClaims:
        if bucket != self.bucket:
            raise StorageError(404, "NoSuchBucket", "Bucket not found")
        check_object_path(path)
        return tokens.verify(self.key, token, bucket, path, scope)

    # -- objects -------------------------------------------------------------------------------
    async def stat(self, path: str) -> ObjectInfo | None:
        target = self.file_path(path)
        try:
            st = await anyio.Path(target).stat()
        except FileNotFoundError:
            return None
        content_type = "application/octet-stream"
        meta = anyio.Path(self._meta_path(path))
        if await meta.exists():
            content_type = json.loads(await meta.read_text()).get("content_type", content_type)
        return ObjectInfo(
            path=path,
            size_bytes=st.st_size,
            content_type=content_type,
            etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    @asynccontextmanager
    async def local_copy(self, path: str) -> AsyncIterator[str]:
        target = self.file_path(path)
        if not await anyio.Path(target).exists():
            raise StorageError(404, "NoSuchKey", "Object not found")
        yield str(target)

    async def receive(
        self,
        path: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        max_bytes: int,
        upsert: bool = False,
        exact_bytes: int | None = None,
    ) -> ObjectInfo:
        """Stream chunks into a temp file beside the target, then rename it into place (only if the size
        is `exact_bytes`, when given)."""
        target = self.file_path(path)
        if not upsert and await anyio.Path(target).exists():
            raise StorageError(409, "Duplicate", "The resource already exists")
        size = 0
        async with self._partial(target) as tmp:
            async with await anyio.open_file(tmp, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise StorageError(413, "EntityTooLarge", "The object exceeded the maximum allowed size")
                    await fh.write(chunk)
            if exact_bytes is not None and size != exact_bytes:
                raise StorageError(400, "InvalidRequest",
                                   f"The upload has {size} bytes, not the {exact_bytes} declared for it")
            await self._write_meta(path, content_type)
            if not upsert and await anyio.Path(target).exists():
                raise StorageError(409, "Duplicate", "The resource already exists")
            await anyio.to_thread.run_sync(os.replace, tmp, target)
        return await self._written(path)

    @asynccontextmanager
    async def _partial(self, target: Path) -> AsyncIterator[Path]:
        """A temporary file beside `target`, for the caller to rename into place; gone if it does not."""
        await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        tmp = Path(scratch.partial_path(str(target)))
        try:
            yield tmp
        finally:
            await anyio.Path(tmp).unlink(missing_ok=True)

    async def _written(self, path: str) -> ObjectInfo:
        info = await self.stat(path)
        assert info is not None  # just renamed into place
        return info

    async def _write_meta(self, path: str, content_type: str) -> None:
        meta = self._meta_path(path)
        await anyio.Path(meta.parent).mkdir(parents=True, exist_ok=True)
        tmp = Path(scratch.partial_path(str(meta)))
        await anyio.Path(tmp).write_text(json.dumps({"content_type": content_type}))
        await anyio.to_thread.run_sync(os.replace, tmp, meta)

    async def write_file(self, path: str, source_file: str, content_type: str) -> ObjectInfo:
        """Store a finished local file (an artifact) under `path`, replacing what was there."""
        target = self.file_path(path)
        async with self._partial(target) as tmp:
            await anyio.to_thread.run_sync(shutil.copyfile, source_file, tmp)
            await self._write_meta(path, content_type)
            await anyio.to_thread.run_sync(os.replace, tmp, target)
        return await self._written(path)

    async def read(self, path: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        target = self.file_path(path)
        try:
            async with await anyio.open_file(target, "rb") as fh:
                while chunk := await fh.read(chunk_size):
                    yield chunk
        except FileNotFoundError as exc:
            raise StorageError(404, "NoSuchKey", "Object not found") from exc

    async def delete(self, paths: list[str]) -> list[str]:
        deleted: list[str] = []
        for path in paths:
            target = self.file_path(path)
            try:
                await anyio.Path(target).unlink()
            except FileNotFoundError:
                continue
            await anyio.Path(self._meta_path(path)).unlink(missing_ok=True)
            deleted.append(path)
        return deleted
