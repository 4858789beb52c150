"""API routes the page needs beyond the core API.

- `GET /v1/languages`: what the installed engines can dub, for the form's pickers. It is derived from
  the same check `POST /v1/jobs` applies, so the page offers exactly what the API accepts. It needs a
  token like every `/v1` route: the list is cheap to give away, but it describes the deployment's
  providers, and "every /v1 route needs a token" stays a rule without exceptions.
- `GET /v1/jobs/{id}/inputs`: short-lived signed download URLs of the job's voice and background, for
  the page's A/B switch against the original.
- `POST /v1/jobs/{id}/events/ticket` and `GET /v1/jobs/{id}/events/stream?ticket=`: the progress stream
  for `EventSource`, which cannot send an `Authorization` header (see `tickets.py`).
- `POST /local/token`: a local access token for a user name, registered only in local mode (the
  secret was generated into DATA_DIR), answered only to this computer (loopback client, and a Host
  header naming this service, which defeats DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from service import jobs, languages
from service.auth import bearer_token, current_user, mint
from service.engines.capabilities import can_transcribe
from service.errors import ApiError, not_found
from service.routes.events import _last_event_id, _stream
from service.settings import Settings
from service.validation import invalid, path_uuid, read_json_object, required_str
from service.web import tickets

LOCAL_TOKEN_TTL_SECONDS = 12 * 3600
LOCAL_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")

LanguageCheck = Callable[[str, list[str]], str | None]


# -- languages -------------------------------------------------------------------------------------

def language_catalog(check: LanguageCheck, engines: Any) -> dict[str, Any]:
    """Sources with the targets the API accepts for them, and whether `auto` (detection) is offered.

    Candidates come from the translator's installed pairs when it lists them (Apertium), else from
    every ISO 639-1 code (an any-pair translator); each is kept only if `check` accepts it.
    Blocking (engines may look at the disk): run it in a thread.
    """
    codes = sorted(languages.ISO_639_1)
    pairs: set[tuple[str, str]] = set(engines.translator.pairs()) if engines is not None else set()
    if pairs:
        candidates: dict[str, list[str]] = {}
        for source, target in sorted(pairs):
            candidates.setdefault(source, []).append(target)
    else:
        candidates = {source: codes for source in codes}
    sources = []
    for source, targets in candidates.items():
        accepted = [t for t in targets if t != source and check(source, [t]) is None]
        if accepted:
            sources.append({"code": source, "targets": accepted})
    # `auto` is offered where the engine detects the language: a transcriber that is not English-only.
    detects = engines is not None and any(can_transcribe(engines, code) for code in codes if code != "en")
    every_target = sorted({t for s in sources for t in s["targets"]}) if pairs else codes
    detect_targets = [t for t in every_target if check(languages.AUTO, [t]) is None] if detects else []
    return {"sources": sources, "detect": {"available": bool(detect_targets), "targets": detect_targets}}


async def list_languages(request: Request) -> Response:
    await current_user(request)
    state = request.app.state
    catalog = getattr(state, "web_language_catalog", None)
    if catalog is None:
        check: LanguageCheck | None = state.language_check
        if check is None:
            raise ApiError(503, "engines_unavailable", "The dubbing engines are not available; see the server log")
        catalog = await asyncio.to_thread(language_catalog, check, getattr(state, "engines", None))
        state.web_language_catalog = catalog
    return JSONResponse(catalog, headers={"Cache-Control": "private, max-age=300"})


# -- the job's inputs, for listening to the original ------------------------------------------------

async def job_inputs(request: Request) -> Response:
    user = await current_user(request)
    settings: Settings = request.app.state.settings
    job = await jobs.representation(request.app.state.pool, user.id, path_uuid(request))
    if job is None:
        raise not_found("Job not found")
    listed = []
    for kind in ("voice", "background"):
        item = job["inputs"].get(kind)
        if item is None:
            continue
        name = item["object_path"].rsplit("/", 1)[-1]
        signed = await request.app.state.storage.create_download_url(
            item["object_path"], settings.download_url_ttl_seconds, name)
        listed.append({"kind": kind, **item, "download_url": signed.url,
                       "download_expires_at": signed.expires_at.isoformat()})
    return JSONResponse({"inputs": listed})


# -- the progress stream for EventSource ---------------------------------------------------------

def _token_expiry(token: str) -> float | None:
    """The `exp` of an access token `current_user` has just verified."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


async def events_ticket(request: Request) -> Response:
    user = await current_user(request)
    settings: Settings = request.app.state.settings
    job_id = path_uuid(request)
    if not await jobs.owned(request.app.state.pool, user.id, job_id):
        raise not_found("Job not found")
    ticket = tickets.issue(settings, user.id, job_id, not_after=_token_expiry(bearer_token(request)))
    path = f"/v1/jobs/{job_id}/events/stream?ticket={ticket.token}"
    return JSONResponse({"url": f"{settings.public_base_url}{path}", "path": path,
                         "expires_at": ticket.expires_at})


async def events_stream(request: Request) -> Response:
    """The same stream as `GET /v1/jobs/{id}/events` (`id:` lines, `Last-Event-ID` resumes exactly)."""
    settings: Settings = request.app.state.settings
    job_id = path_uuid(request)
    user_id = tickets.verify(settings, request.query_params.get("ticket", ""), job_id)
    structlog.contextvars.bind_contextvars(user_id=user_id)
    after = _last_event_id(request)
    if not await jobs.owned(request.app.state.pool, user_id, job_id):
        raise not_found("Job not found")
    return StreamingResponse(_stream(request, str(job_id), after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- local sign-in ---------------------------------------------------------------------------------

def _local_only(request: Request, settings: Settings) -> None:
    client = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        loopback = client == "localhost"
    port = settings.port
    hosts = {urlsplit(settings.public_base_url).netloc.lower(), f"127.0.0.1:{port}", f"localhost:{port}",
             f"[::1]:{port}"}
    if not loopback or request.headers.get("host", "").lower() not in hosts:
        raise ApiError(403, "local_only", "Local sign-in answers only on the computer the service runs on; "
                                          f"open {settings.public_base_url}/ there")


async def local_token(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    _local_only(request, settings)
    body = await read_json_object(request)
    user = required_str(body, "user", 64)
    if not LOCAL_USER.match(user):
        raise invalid("user", "may use letters, digits and . _ @ + - (up to 64, starting with a letter or digit)")
    token = mint(settings.jwt_secret, user, LOCAL_TOKEN_TTL_SECONDS, settings.iss)
    return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": LOCAL_TOKEN_TTL_SECONDS,
                         "expires_at": int(time.time()) + LOCAL_TOKEN_TTL_SECONDS, "user": {"id": user}},
                        headers={"Cache-Control": "no-store"})
