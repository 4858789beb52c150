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

UPLOAD = "upload"
DOWNLOAD = "download"


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StorageClaims:
    url: str
    scope: str
    exp: int
    upsert: bool


def storage_key(service_secret: str) -> bytes:
    return hmac.new(service_secret.encode(), b"dubbing-storage-v1", hashlib.sha256).digest()


def sign(key: bytes, bucket: str, path: str, scope: str, ttl_seconds: int, upsert: bool = False) -> tuple[str, int]:
    now = int(time.time())
    exp = now + ttl_seconds
    claims = {"url": f"{bucket}/{path}", "scope": scope, "upsert": upsert, "iat": now, "exp": exp}
    return jwt.encode(claims, key, algorithm="HS256"), exp


def verify(key: bytes, token: str, bucket: str, path: str, scope: str) -> StorageClaims:
    """Check signature, expiry, scope and that the token names exactly this object."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp", "url", "scope"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("InvalidJWT", '"exp" claim timestamp check failed') from exc
    except jwt.PyJWTError as exc:
        raise TokenError("InvalidJWT", f"invalid signature token: {exc}") from exc
    if claims.get("scope") != scope:
        raise TokenError("InvalidJWT", f"token scope is not {scope}")
    if claims.get("url") != f"{bucket}/{path}":
        raise TokenError("InvalidSignature", "the url does not match the signature")
    return StorageClaims(url=claims["url"], scope=claims["scope"], exp=int(claims["exp"]),
                         upsert=bool(claims.get("upsert", False)))
