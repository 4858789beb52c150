"""CORS for separate frontend origins (`CORS_ORIGINS`), off when none are configured.

Covers the API (`/v1/...`), the page's `/config.json` and the signed storage routes (`/storage/v1/...`).
Preflights are answered the way Supabase Storage's gateway answers them (the headers supabase-js and
a browser upload send: authorization, x-client-info, apikey, content-type, x-upsert, cache-control),
but only for the listed origins: the origin is echoed back, never `*`, and no credentials are
allowed (the API takes bearer tokens, not cookies). A preflight from any other origin gets a 403
with the API's error body and no CORS headers, so the browser blocks the request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

PATH_PREFIXES = ("/v1/", "/storage/v1/")
PATHS = ("/v1", "/config.json")
ALLOW_HEADERS = ("authorization, x-client-info, apikey, content-type, x-upsert, cache-control, "
                 "last-event-id, x-request-id, range")
ALLOW_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
EXPOSE_HEADERS = "content-length, content-range, content-disposition, etag, x-request-id, www-authenticate"
MAX_AGE = "86400"


def normalize_origins(origins: Iterable[str]) -> frozenset[str]:
    """`https://app.example.com/` → `https://app.example.com`; anything that is not an origin is dropped."""
    kept: set[str] = set()
    for raw in origins:
        origin = raw.strip().rstrip("/").lower()
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest or "*" in rest:
            log.warning("cors.origin_ignored", origin=raw, reason="not a scheme://host[:port] origin")
            continue
        kept.add(origin)
    return frozenset(kept)


def _covered(path: str) -> bool:
    return path in PATHS or path.startswith(PATH_PREFIXES)


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = normalize_origins(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.origins or not _covered(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        origin = headers.get(b"origin", b"").decode("latin-1")
        allowed = origin.lower() in self.origins
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers and origin:
            await self._preflight(send, origin, allowed)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                out.append((b"vary", b"Origin"))
                if allowed:
                    out.append((b"access-control-allow-origin", origin.encode("latin-1")))
                    out.append((b"access-control-expose-headers", EXPOSE_HEADERS.encode()))
                message["headers"] = out
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _preflight(send: Send, origin: str, allowed: bool) -> None:
        if allowed:
            status, body = 204, b""
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE.encode()),
                (b"vary", b"Origin"),
            ]
        else:
            status = 403
            body = json.dumps({"error": {"code": "cors_origin_not_allowed",
                                         "message": "This origin is not allowed to call the API"}}).encode()
            headers = [(b"content-type", b"application/json"), (b"vary", b"Origin")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
