"""The page itself: `/` (index.html), `/static/...` and `/config.json`, with a strict CSP.

No script runs from the HTML (no inline script or style, no `eval`); the page's ES modules and the
vendored supabase-js come from this origin only. Trusted Types are required for script sinks, with one
policy (`dubbing`) that may only name the vendored supabase-js file. The page reaches this app and, in
cloud mode, the Supabase project (Auth and Storage); media and fetches may go nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from service.domain import STAGE_ORDER, TERMINAL
from service.settings import AUDIO_FORMATS, VIDEO_FORMATS, Settings

STATIC_DIR = Path(__file__).parent / "static"


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(settings: Settings) -> str:
    # Signed storage URLs point at PUBLIC_BASE_URL (local storage) or the Supabase project.
    others = sorted({o for o in (_origin(settings.public_base_url), _origin(settings.supabase_url)) if o})
    extra = "".join(f" {o}" for o in others)
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        f"connect-src 'self'{extra}",
        f"media-src 'self' blob:{extra}",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types dubbing",
    ])


def security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        # Signed URLs must never leak through Referer; the page's own URLs carry no secrets either.
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }


async def index(settings: Settings, request: Request) -> Response:
    headers = {**security_headers(settings), "Cache-Control": "no-cache"}
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=headers)


class PageFiles(StaticFiles):
    """The page's static files with the same security headers; revalidated on every load (ETag)."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        super().__init__(directory=directory)
        self.settings = settings

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(security_headers(self.settings))
        response.headers["Cache-Control"] = "no-cache"
        if str(full_path).endswith(".js"):
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response


def mode(settings: Settings) -> str:
    """`local`: sign in with a name (generated secret); `cloud`: Supabase Auth; `token`: paste a token
    (`dubbing token --user NAME`), for a fixed SUPABASE_JWT_SECRET without a Supabase project."""
    if settings.local_auth:
        return "local"
    return "cloud" if settings.supabase_url else "token"


async def config(settings: Settings, request: Request) -> Response:
    """What the page needs before sign-in. The anon key is public by design (Supabase's browser key)."""
    body: dict[str, Any] = {
        "mode": mode(settings),
        "public_base_url": settings.public_base_url,
        "supabase": {"url": settings.supabase_url, "anon_key": settings.supabase_anon_key}
        if settings.supabase_url else None,
        "uploads": {"max_bytes": settings.max_upload_bytes,
                    "accepted_types": list(settings.allowed_content_types),
                    "formats": [{"name": f.name, "types": list(f.types), "extensions": list(f.extensions)}
                                for f in AUDIO_FORMATS if set(f.types) & set(settings.allowed_content_types)],
                    # A video picked as the voice is a media job (docs/media.md).
                    "media": {"max_bytes": settings.max_media_bytes,
                              "formats": [{"name": f.name, "types": list(f.types), "extensions": list(f.extensions)}
                                          for f in VIDEO_FORMATS]}},
        "max_target_languages": settings.max_target_languages,
        # The page ranks a language's stages by this order (never backwards) and stops at a terminal one.
        "stages": {"order": [str(s) for s in STAGE_ORDER], "terminal": [str(s) for s in STAGE_ORDER if s in TERMINAL]},
    }
    return JSONResponse(body, headers={"Cache-Control": "no-cache"})
