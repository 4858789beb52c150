"""Sending one signed webhook: checked against the SSRF guard, pinned to the checked address, no redirects."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from service.errors import UnsafeDestination
from service.integrations import signing, url_guard
from service.integrations.attempts import Attempt, excerpt

USER_AGENT = "dubbing-webhooks/1"


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes sent (and signed): compact JSON of the stored event."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _pinned_url(destination: url_guard.Destination) -> httpx.URL:
    """The URL with its host replaced by the checked address (the Host header and TLS keep the name)."""
    return httpx.URL(destination.url).copy_with(host=destination.address, port=destination.port)


class WebhookSender:
    """Holds one HTTP client for every delivery of the process."""

    def __init__(self, key: bytes, allow_private: bool, timeout_seconds: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.key = key
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(follow_redirects=False, timeout=timeout_seconds, transport=transport,
                                        headers={"user-agent": USER_AGENT})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, url: str, message_id: str, payload: dict[str, Any]) -> Attempt:
        started = time.perf_counter()

        def ms() -> float:
            return round((time.perf_counter() - started) * 1000, 2)

        try:
            destination = await url_guard.check(url, self.allow_private)  # again now: DNS may have changed
        except UnsafeDestination as exc:
            return Attempt(False, None, ms(), exc.message, retry=exc.retryable)
        body = body_of(payload)
        headers = {"content-type": "application/json", "host": _host_header(destination),
                   **signing.headers(self.key, message_id, int(time.time()), body)}
        extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
        try:
            response = await self.client.post(_pinned_url(destination), content=body, headers=headers,
                                              extensions=extensions)
        except httpx.TimeoutException:
            return Attempt(False, None, ms(), "timed out")
        except httpx.TransportError as exc:
            return Attempt(False, None, ms(), f"{type(exc).__name__}: {exc}"[:300])
        text = excerpt(response.text)
        if response.is_success:
            return Attempt(True, response.status_code, ms(), None, text)
        reason = "redirect not followed" if response.is_redirect else f"HTTP {response.status_code}"
        return Attempt(False, response.status_code, ms(), reason, text)


def _host_header(destination: url_guard.Destination) -> str:
    default = 443 if destination.scheme == "https" else 80
    name = f"[{destination.host}]" if ":" in destination.host else destination.host
    return name if destination.port == default else f"{name}:{destination.port}"
