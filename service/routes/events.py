"""`GET /v1/jobs/{id}/events`: the job's `task_events` as server-sent events (and `.../events/stream?ticket=`,
the same for a browser's EventSource, which cannot send the access token).

The backlog comes from the table (everything after `Last-Event-ID`), live events from the process's
one LISTEN connection; sequence numbers make the hand-over exact. Ends after the `done` event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import jwt
import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from service.db import events, jobs
from service.db.events import Event
from service.db.listener import END, RESYNC
from service.errors import ApiError, ErrorCode
from service.routes import tickets
from service.routes.auth import bearer_token, current_user
from service.routes.errors import bad_request, not_found
from service.routes.models import StreamTicket, respond
from service.routes.requests import path_uuid
from service.routes.services import services

_MAX_SEQ = 2**63 - 1  # task_events.seq is a bigint


def format_event(event: Event) -> str:
    data = json.dumps(event.payload(), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0"
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(ErrorCode.INVALID_LAST_EVENT_ID,
                          "Last-Event-ID must be an event id from this stream") from exc
    if value > _MAX_SEQ:
        raise bad_request(ErrorCode.INVALID_LAST_EVENT_ID, "Last-Event-ID must be an event id from this stream")
    return max(value, 0)


async def _stream(request: Request, job_id_text: str, after: int) -> AsyncIterator[str]:
    svc = services(request)
    listener, pool, keepalive = svc.listener, svc.db.pool, svc.settings.sse_keepalive_seconds
    job_id = path_uuid(request)
    subscription = listener.subscribe(job_id_text)
    last = after
    try:
        # The reconnect delay rides on the first event (a block of its own would be an event without data).
        retry = "retry: 2000\n"
        pending: list[Event] = await events.since(pool, job_id, last)
        while True:
            for index, event in enumerate(pending):
                if event.seq <= last:
                    continue
                last = event.seq
                yield retry + format_event(event)
                retry = ""
                # A `done` followed by more history is a job an operator ran again (ops.retry_task): go on.
                if event.kind == "done" and index == len(pending) - 1:
                    return
            pending = []
            try:
                item = await asyncio.wait_for(subscription.queue.get(), timeout=keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item == END:  # shutting down: end cleanly, the client resumes with Last-Event-ID elsewhere
                yield ": the server is restarting; reconnect to resume\n\n"
                return
            if item == RESYNC:
                pending = await events.since(pool, job_id, last)
            elif isinstance(item, Event):
                if item.seq > last + 1:  # a gap: fetch what lies between from the table
                    pending = await events.since(pool, job_id, last)
                else:
                    pending = [item]
    finally:
        listener.unsubscribe(subscription)


async def job_events(request: Request) -> Response:
    user = await current_user(request)
    job_id = path_uuid(request)
    after = _last_event_id(request)
    svc = services(request)
    if not await jobs.owned(svc.db.pool, user.id, job_id):
        raise not_found("Job not found")
    if svc.listener.ending:
        raise ApiError(503, ErrorCode.SHUTTING_DOWN, "The server is restarting; try again in a moment",
                       retryable=True)
    return StreamingResponse(
        _stream(request, str(job_id), after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- the same stream for EventSource, which cannot send an Authorization header (see `tickets.py`) --


def _token_expiry(token: str) -> float | None:
    """The `exp` of an access token `current_user` has just verified."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


async def events_ticket(request: Request) -> Response:
    user = await current_user(request)
    svc = services(request)
    settings = svc.settings
    job_id = path_uuid(request)
    if not await jobs.owned(svc.db.pool, user.id, job_id):
        raise not_found("Job not found")
    ticket = tickets.issue(settings, user.id, job_id, not_after=_token_expiry(bearer_token(request)))
    path = f"/v1/jobs/{job_id}/events/stream?ticket={ticket.token}"
    return respond({"url": f"{settings.public_base_url}{path}", "path": path, "expires_at": ticket.expires_at},
                   StreamTicket)


async def events_stream(request: Request) -> Response:
    """The same stream as `GET /v1/jobs/{id}/events` (`id:` lines, `Last-Event-ID` resumes exactly)."""
    svc = services(request)
    settings = svc.settings
    job_id = path_uuid(request)
    user_id = tickets.verify(settings, request.query_params.get("ticket", ""), job_id)
    structlog.contextvars.bind_contextvars(user_id=user_id)
    after = _last_event_id(request)
    if not await jobs.owned(svc.db.pool, user_id, job_id):
        raise not_found("Job not found")
    return StreamingResponse(_stream(request, str(job_id), after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
