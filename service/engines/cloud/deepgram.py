"""Deepgram's shared client and error mapping; speech-to-text is in `deepgram_listen`, text-to-speech
in `deepgram_speak`.

Every call goes through a shared `ProviderClient`, which retries 408/409/429/5xx, connect errors and
timeouts (honouring `retry-after-ms`, `Retry-After`, `X-RateLimit-Reset`). Deepgram limits concurrency
per project and separately for each API (about 100 pre-recorded STT requests, 15 Aura REST requests),
so speech-to-text and text-to-speech each get their own client and semaphore (`make_stt_client`,
`make_tts_client`). What is left after retries becomes an `EngineError` (`providers.errors.engine_error`).

API keys and signed-URL tokens never reach an error message or a log line.
"""

from __future__ import annotations

from typing import Any

import httpx

from service.errors import EngineError, ErrorCode, ProviderError
from service.providers.errors import engine_error, error_parser
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings

PROVIDER = "deepgram"
PROJECTS = "/v1/projects"
REQUEST_ID_HEADERS = ("dg-request-id", "x-dg-request-id", "x-request-id")


def _extract(body: Any) -> tuple[str | None, str | None]:
    """`{err_code, err_msg, request_id}` or `{category, message, details, request_id}`."""
    if not isinstance(body, dict):
        return None, str(body)[:300]
    code = body.get("err_code") or body.get("category")
    message = body.get("err_msg") or body.get("message") or ""
    details = body.get("details")
    if details and str(details) not in str(message):
        message = f"{message}: {details}" if message else str(details)
    return code, message or None


def failure(exc: ProviderError, what: str) -> EngineError:
    """A Deepgram failure as the engine reports it."""
    return engine_error(exc, "Deepgram", what)


def make_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                policy: RetryPolicy | None = None, concurrency: int | None = None,
                timeout: httpx.Timeout | None = None) -> ProviderClient:
    """A Deepgram client with its own semaphore; create once (lifespan), `aclose()` on shutdown.

    Prefer `make_stt_client` and `make_tts_client`: Deepgram counts the two APIs' concurrency apart.
    """
    key = settings.deepgram_api_key
    if not key:
        raise EngineError(ErrorCode.PROVIDER_AUTH, "DEEPGRAM_API_KEY is not set")
    limit = max(concurrency if concurrency is not None else settings.deepgram_stt_concurrency, 1)
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}  # else ProviderClient's default
    return ProviderClient(
        name=PROVIDER,
        base_url=settings.deepgram_base_url.rstrip("/"),
        headers={"Authorization": f"Token {key}"},
        concurrency=limit,
        max_connections=limit,
        policy=policy or RetryPolicy(),
        error_parser=error_parser(_extract, key),
        request_id_headers=REQUEST_ID_HEADERS,
        transport=transport,
        **options,
    )


def make_stt_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                    policy: RetryPolicy | None = None) -> ProviderClient:
    """For `/v1/listen`: a long read timeout, since Deepgram answers only once the whole file is done."""
    return make_client(settings, transport, policy=policy, concurrency=settings.deepgram_stt_concurrency,
                       timeout=httpx.Timeout(30.0, read=900.0, write=300.0))


def make_tts_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                    policy: RetryPolicy | None = None) -> ProviderClient:
    """For `/v1/speak` (Aura REST allows fewer concurrent requests than STT)."""
    return make_client(settings, transport, policy=policy, concurrency=settings.deepgram_tts_concurrency,
                       timeout=httpx.Timeout(30.0, read=120.0, write=60.0))


async def check(client: ProviderClient) -> str:
    """A cheap authenticated call for `doctor`: the projects this key belongs to."""
    try:
        data = await client.json("GET", PROJECTS, endpoint="projects")
    except ProviderError as exc:
        raise failure(exc, "check") from None
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, list):
        raise EngineError(ErrorCode.ENGINE_FAILED, "Deepgram check: the projects answer has no projects list")
    names = [str(p.get("name")) for p in projects if isinstance(p, dict) and p.get("name")]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"deepgram: key accepted, {len(projects)} project(s)" + (f" ({shown})" if shown else "")
