"""Object storage: one interface, a local-disk backend now and Supabase Storage later."""

from service.storage.base import ObjectInfo, SignedUrl, Storage, StorageError

__all__ = ["ObjectInfo", "SignedUrl", "Storage", "StorageError"]
