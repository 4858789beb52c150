"""Signed progress-stream URLs, so a browser's `EventSource` can follow a job without its access token.

`EventSource` cannot send an `Authorization` header, and the access token must never travel in a URL.
The page therefore asks (with its token) for a ticket: an HS256 JWT bound to one user, one job and the
`events` scope, valid for minutes and never beyond the access token's own expiry. Its key is derived
from the service's secret with a label of its own, so a ticket can pass neither as an access token nor
as a storage token. Like a signed storage URL it is a read-only capability; the stream only checks it
when a connection opens, and a reconnect with an expired ticket gets a 401, on which the page asks
for a new one and resumes from the last event it saw.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from uuid import UUID

import jwt

from service.errors import ApiError, ErrorCode
from service.settings import Settings

SCOPE = "events"
TTL_SECONDS = 15 * 60
_LABEL = b"dubbing-events-ticket-v1"
# Without any configured secret (JWKS-only auth and local storage) tickets live as long as the process.
_PROCESS_SECRET = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Ticket:
    token: str
    expires_at: int


def ticket_key(settings: Settings) -> bytes:
    secret = settings.jwt_secret or settings.supabase_service_key or _PROCESS_SECRET
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def issue(settings: Settings, user_id: str, job_id: UUID, not_after: float | None = None) -> Ticket:
    now = int(time.time())
    exp = now + TTL_SECONDS
    if not_after is not None:
        exp = min(exp, int(not_after))
    claims = {"sub": user_id, "job": str(job_id), "scope": SCOPE, "iat": now, "exp": exp}
    return Ticket(jwt.encode(claims, ticket_key(settings), algorithm="HS256"), exp)


def verify(settings: Settings, token: str, job_id: UUID) -> str:
    """The ticket's user; 401 when it is missing, forged, expired or for another job."""
    if not token:
        raise ApiError(401, ErrorCode.MISSING_TICKET,
                       "Open the stream with the URL POST /v1/jobs/{id}/events/ticket gave")
    try:
        claims = jwt.decode(token, ticket_key(settings), algorithms=["HS256"],
                            options={"require": ["exp", "sub", "job", "scope"]})
    except jwt.ExpiredSignatureError as exc:
        raise ApiError(401, ErrorCode.TICKET_EXPIRED, "The stream ticket has expired; ask for a new one") from exc
    except jwt.PyJWTError as exc:
        raise ApiError(401, ErrorCode.INVALID_TICKET, "The stream ticket is not valid") from exc
    if claims.get("scope") != SCOPE or claims.get("job") != str(job_id) or not isinstance(claims.get("sub"), str):
        raise ApiError(401, ErrorCode.INVALID_TICKET, "The stream ticket is not for this job")
    return str(claims["sub"])
