"""The one place that picks the storage backend: Supabase Storage when configured, else local disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from service.settings import Settings
from service.storage.base import Storage
from service.storage.local import LocalStorage


@asynccontextmanager
async def open_storage(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[Storage]:
    if settings.cloud_storage:
        from service.storage.supabase import SupabaseStorage, make_client

        client = make_client(settings, transport=transport)
        try:
            yield SupabaseStorage(client, settings.supabase_url or "", settings.storage_bucket,
                                  scratch_dir=settings.scratch_dir / "downloads")
        finally:
            await client.aclose()
        return
    yield LocalStorage(settings.storage_dir, settings.storage_bucket, settings.public_base_url, settings.jwt_secret
                       or "local")
