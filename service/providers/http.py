"""One HTTP layer for every provider: a shared client, a concurrency limit, retries, logs.

Retries follow Deepgram's SDK, which is a sound model for all three providers: 408, 409, 429 and
5xx, connect errors and timeouts are retried, honouring `retry-after-ms`, then `Retry-After`, then
`X-RateLimit-Reset`, otherwise exponential backoff from 1 s capped at 60 s (stamina does the loop).
Any other 4xx fails at once with the provider's own error code and message.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import stamina
import structlog

from service import metrics
from service.errors import ErrorCode, ProviderError, RetryableResponse

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429})


# Parses a provider's error body into (code, message).
ErrorParser = Callable[[httpx.Response], tuple[str, str]]


def default_error_parser(response: httpx.Response) -> tuple[str, str]:
    return f"http_{response.status_code}", response.text[:300] or response.reason_phrase


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """What the provider asked us to wait, from the headers it uses, in that order."""
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    if (after := headers.get("retry-after")) is not None:
        try:
            return max(float(after), 0.0)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(after) if after else None
            if parsed is not None:
                return max(parsed.timestamp() - (now or time.time()), 0.0)
    if (reset := headers.get("x-ratelimit-reset")) is not None:
        try:
            value = float(reset)
        except ValueError:
            return None
        # Either seconds from now or an epoch timestamp.
        return max(value - (now or time.time()), 0.0) if value > 1e9 else max(value, 0.0)
    return None


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried (stamina): shared by clients and tests, so never changed in place."""

    attempts: int = 5
    wait_initial: float = 1.0
    wait_max: float = 60.0
    total_timeout: float = 600.0


@dataclass
class ProviderClient:
    """A provider's shared `httpx.AsyncClient`, created in the lifespan and closed on shutdown."""

    name: str
    base_url: str
    headers: dict[str, str] = field(repr=False)
    concurrency: int = 8
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, read=300.0, write=300.0))
    max_connections: int = 20
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    error_parser: ErrorParser = default_error_parser
    request_id_headers: tuple[str, ...] = ("x-request-id",)
    # Error codes that waiting does not fix even on a 429/5xx (OpenAI's `insufficient_quota`).
    permanent_codes: frozenset[str] = frozenset()
    transport: httpx.AsyncBaseTransport | None = None

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, transport=self.transport,
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
        )
        self.limit = asyncio.Semaphore(self.concurrency)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _request_id(self, response: httpx.Response) -> str | None:
        for name in self.request_id_headers:
            if value := response.headers.get(name):
                return str(value)
        return None

    def _backoff_hook(self, exc: BaseException) -> bool | float:
        if isinstance(exc, RetryableResponse):
            return exc.wait if exc.wait is not None else True
        return isinstance(exc, httpx.TransportError)

    def _raise_for(self, response: httpx.Response, endpoint: str) -> None:
        if response.is_success:
            return
        code, message = self.error_parser(response)
        if is_retryable_status(response.status_code) and code not in self.permanent_codes:
            raise RetryableResponse(response, retry_after_seconds(response))
        raise ProviderError(self.name, response.status_code, code, message, request_id=self._request_id(response))

    def _log(self, endpoint: str, method: str, status: int | str, started: float, request_id: str | None,
             attempt: int) -> None:
        seconds = time.perf_counter() - started
        log.info("provider.request", provider=self.name, endpoint=endpoint, method=method, status=status,
                 ms=round(seconds * 1000, 1), provider_request_id=request_id,
                 request_attempt=attempt)  # `attempt` is the task's (bound by the runner)
        metrics.provider_request(self.name, endpoint, status, seconds, attempt)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, endpoint: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A response whose body is not read yet (stream it). Retries happen before the body is used.

        The provider's concurrency slot is held until the body has been consumed.
        """
        async with self.limit:
            response = await self._send_with_retries(method, url, endpoint, kwargs)
            try:
                yield response
            finally:
                await response.aclose()

    async def _send_with_retries(self, method: str, url: str, endpoint: str, kwargs: dict[str, Any]) -> httpx.Response:
        attempt = 0
        try:
            async for attempt_ctx in stamina.retry_context(
                on=self._backoff_hook, attempts=self.policy.attempts, timeout=self.policy.total_timeout,
                wait_initial=self.policy.wait_initial, wait_max=self.policy.wait_max,
                wait_jitter=0.1 * self.policy.wait_initial,
            ):
                with attempt_ctx:
                    attempt += 1
                    started = time.perf_counter()
                    try:
                        response = await self.client.send(self.client.build_request(method, url, **kwargs),
                                                           stream=True)
                    except httpx.TransportError as exc:
                        self._log(endpoint, method, type(exc).__name__, started, None, attempt)
                        raise
                    self._log(endpoint, method, response.status_code, started, self._request_id(response), attempt)
                    if not response.is_success:
                        await response.aread()
                        await response.aclose()
                    self._raise_for(response, endpoint)
                    return response
        except RetryableResponse as exc:
            code, message = self.error_parser(exc.response)
            raise ProviderError(self.name, exc.response.status_code, code,
                                f"{message} (gave up after {attempt} attempts)", retryable=True,
                                request_id=self._request_id(exc.response)) from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(self.name, None, ErrorCode.TIMEOUT, f"{endpoint} timed out after {attempt} attempts",
                                retryable=True) from exc
        except httpx.TransportError as exc:
            raise ProviderError(self.name, None, ErrorCode.CONNECTION_FAILED,
                                f"{endpoint}: {type(exc).__name__} after {attempt} attempts", retryable=True) from exc
        raise AssertionError("unreachable: stamina either returns a response or raises")

    async def send(self, method: str, url: str, *, endpoint: str, **kwargs: Any) -> httpx.Response:
        """A request whose whole (small) body is read: JSON answers."""
        async with self.stream(method, url, endpoint=endpoint, **kwargs) as response:
            await response.aread()
            return response

    async def json(self, method: str, url: str, *, endpoint: str, **kwargs: Any) -> Any:
        response = await self.send(method, url, endpoint=endpoint, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError(self.name, response.status_code, ErrorCode.MALFORMED_RESPONSE,
                                f"{endpoint} answered with a body that is not JSON",
                                retryable=True, request_id=self._request_id(response)) from exc
