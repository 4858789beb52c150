"""Reading providers' error answers, and what a failed call means to the engine that made it.

Each provider has its own body shape; `error_parser` wraps a provider's `extract(body)` with what they
share (a body that is not JSON, a message that is empty, redaction). `engine_error` turns what is left
after the HTTP layer's retries into the engine's error: whether it is worth a later attempt was decided
there (`ProviderError.retryable`), and is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import httpx

from service.errors import EngineError, ErrorCode, ProviderError
from service.providers.http import ErrorParser
from service.providers.redaction import redact

# (code, message) of a provider's JSON error body, or None when the body is not one of its errors.
Extract = Callable[[Any], tuple[str | None, str | None]]



def error_parser(extract: Extract, *secrets: str | None) -> ErrorParser:
    def parse(response: httpx.Response) -> tuple[str, str]:
        fallback = f"http_{response.status_code}"
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
            try:
                text = response.text
            except httpx.ResponseNotRead:
                text = ""
            return fallback, redact(text[:300] or response.reason_phrase, *secrets)
        code, message = extract(body)
        return str(code or fallback), redact(str(message or response.reason_phrase)[:500], *secrets)

    return parse


def engine_error(exc: ProviderError, label: str, what: str, *, quota_codes: Collection[str] = (),
                 quota_statuses: Collection[int] = (402,)) -> EngineError:
    """`provider_auth` (401/403), `provider_quota` (out of credits: waiting does not help),
    `provider_unavailable` (worth a later attempt) or `provider_rejected` (the request's own fault)."""
    status = f"HTTP {exc.status}" if exc.status is not None else exc.code
    detail = f"{label} {what} failed ({status}, {exc.code}): {exc.message}"
    if exc.request_id:
        detail += f" [request {exc.request_id}]"
    detail = redact(detail)
    if exc.status in (401, 403):
        return EngineError(ErrorCode.PROVIDER_AUTH, detail, retryable=False)
    if exc.status in quota_statuses or exc.code in quota_codes:
        return EngineError(ErrorCode.PROVIDER_QUOTA, detail, retryable=False)
    if exc.retryable:
        return EngineError(ErrorCode.PROVIDER_UNAVAILABLE, detail, retryable=True)
    return EngineError(ErrorCode.PROVIDER_REJECTED, detail, retryable=False)
