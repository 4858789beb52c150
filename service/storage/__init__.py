"""Object storage: one interface (`base`), local disk speaking Supabase's signed-URL format, Supabase Storage."""

from service.errors import StorageError
from service.storage.base import ObjectInfo, SignedUrl, Storage

__all__ = ["ObjectInfo", "SignedUrl", "Storage", "StorageError"]
