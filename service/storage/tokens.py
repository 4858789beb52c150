"""Signed-URL tokens in the shape Supabase Storage uses: `{url: "bucket/path", scope, exp}`.

They are HS256 JWTs under a key derived from the service secret, so an auth token can never pass
as a storage token nor the other way round, and each is bound to one path and one scope.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

from service.errors import StorageError

UPLOAD = "upload"
DOWNLOAD = "download"


@dataclass(frozen=True)
class StorageClaims:
    url: str
    scope: str
    exp: int
    upsert: bool
    size: int | None = None  # an upload token: the exact size the client declared


def storage_key(service_secret: str) -> bytes:
    return hmac.new(service_secret.encode(), b"dubbing-storage-v1", hashlib.sha256).digest()


def sign(key: bytes, bucket: str, path: str, scope: str, ttl_seconds: int, upsert: bool = False,
         size: int | None = None) -> tuple[str, int]:
    now = int(time.time())
    exp = now + ttl_seconds
    claims: dict[str, object] = {"url": f"{bucket}/{path}", "scope": scope, "upsert": upsert, "iat": now, "exp": exp}
    if size is not None:
        claims["size"] = size
    return jwt.encode(claims, key, algorithm="HS256"), exp


def verify(key: bytes, token: str, bucket: str, path: str, scope: str) -> StorageClaims:
    """Check signature, expiry, scope and that the token names exactly this object."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp", "url", "scope"]})
    except jwt.ExpiredSignatureError as exc:
        raise StorageError(400, "InvalidJWT", '"exp" claim timestamp check failed') from exc
    except jwt.PyJWTError as exc:
        raise StorageError(400, "InvalidJWT", f"invalid signature token: {exc}") from exc
    if claims.get("scope") != scope:
        raise StorageError(400, "InvalidJWT", f"token scope is not {scope}")
    if claims.get("url") != f"{bucket}/{path}":
        raise StorageError(403, "InvalidSignature", "the url does not match the signature")
    size = claims.get("size")
    return StorageClaims(url=claims["url"], scope=claims["scope"], exp=int(claims["exp"]),
                         upsert=bool(claims.get("upsert", False)), size=size if isinstance(size, int) else None)
