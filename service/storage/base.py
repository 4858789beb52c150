"""The storage interface the API and the pipeline use, whatever the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class SignedUrl:
    url: str
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size_bytes: int
    content_type: str
    etag: str
    last_modified: datetime


class Storage(Protocol):
    """Paths are relative to the backend's bucket, for example `<user>/uploads/<id>/voice.wav`."""

    bucket: str
    # True when the objects live elsewhere (Supabase): a provider can fetch them by signed URL, and the
    # browser talks to the backend itself; False for the local disk, whose signed URLs this app serves.
    is_remote: bool

    async def create_upload_url(self, path: str, ttl_seconds: int, size_bytes: int | None = None) -> SignedUrl:
        """A signed URL the browser uploads `path` to, once. Backends that can bind `size_bytes` into the URL
        do (local); the others leave it to the check at job creation (Supabase)."""
        ...

    async def create_download_url(
        self, path: str, ttl_seconds: int, download_name: str | None = None
    ) -> SignedUrl: ...

    async def stat(self, path: str) -> ObjectInfo | None: ...

    def local_copy(self, path: str) -> AbstractAsyncContextManager[str]:
        """A filesystem path holding the object's bytes for as long as the context is open."""
        ...

    async def write_file(self, path: str, source_file: str, content_type: str) -> ObjectInfo: ...

    def read(self, path: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]: ...

    async def delete(self, paths: list[str]) -> list[str]: ...
