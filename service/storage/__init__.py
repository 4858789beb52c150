"""Object storage: one interface, a local-disk backend now and Supabase Storage later."""

from service.errors import StorageError
from service.storage.base import ObjectInfo, SignedUrl, Storage

__all__ = ["ObjectInfo", "SignedUrl", "Storage", "StorageError"]
