"""The shared provider HTTP layer: which answers are retried, how long it waits, what it raises."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
import respx

from service.errors import ProviderError
from service.providers.http import ProviderClient, RetryPolicy, retry_after_seconds

FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, total_timeout=10)


def client(**overrides: object) -> ProviderClient:
    options: dict[str, object] = {"name": "acme", "base_url": "https://api.acme.test",
                                  "headers": {"Authorization": "Token s3cret"}, "policy": FAST}
    options.update(overrides)
    return ProviderClient(**options)  # type: ignore[arg-type]


@respx.mock
async def test_429_with_retry_after_then_success() -> None:
    route = respx.post("https://api.acme.test/v1/x").mock(side_effect=[
        httpx.Response(429, headers={"retry-after-ms": "20"}, json={"err_code": "TOO_MANY"}),
        httpx.Response(200, json={"ok": True}, headers={"x-request-id": "req-2"}),
    ])
    started = time.perf_counter()
    assert await client().json("POST", "/v1/x", endpoint="x") == {"ok": True}
    assert route.call_count == 2
    assert time.perf_counter() - started >= 0.02
    assert route.calls[0].request.headers["authorization"] == "Token s3cret"


@respx.mock
async def test_5xx_until_attempts_run_out() -> None:
    route = respx.get("https://api.acme.test/v1/y").mock(return_value=httpx.Response(503, text="busy"))
    with pytest.raises(ProviderError) as caught:
        await client().send("GET", "/v1/y", endpoint="y")
    assert route.call_count == 3
    assert caught.value.retryable and caught.value.status == 503
    assert "3 attempts" in caught.value.message


@pytest.mark.parametrize("status", [400, 401, 403, 404])
@respx.mock
async def test_other_4xx_fail_at_once(status: int) -> None:
    route = respx.get("https://api.acme.test/v1/z").mock(return_value=httpx.Response(status, json={"e": 1}))
    with pytest.raises(ProviderError) as caught:
        await client().send("GET", "/v1/z", endpoint="z")
    assert route.call_count == 1
    assert not caught.value.retryable and caught.value.status == status


@respx.mock
async def test_timeouts_and_connect_errors_are_retried() -> None:
    route = respx.get("https://api.acme.test/v1/t").mock(side_effect=[
        httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200, json={})])
    assert await client().json("GET", "/v1/t", endpoint="t") == {}
    assert route.call_count == 3
    route.side_effect = httpx.ReadTimeout("slow")
    with pytest.raises(ProviderError) as caught:
        await client().send("GET", "/v1/t", endpoint="t")
    assert caught.value.code == "timeout" and caught.value.retryable


@respx.mock
async def test_malformed_json_is_a_clear_error() -> None:
    respx.get("https://api.acme.test/v1/j").mock(return_value=httpx.Response(200, text="{truncated"))
    with pytest.raises(ProviderError) as caught:
        await client().json("GET", "/v1/j", endpoint="j")
    assert caught.value.code == "malformed_response"


def test_retry_after_headers_in_order() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds(httpx.Response(429, headers={"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_seconds(httpx.Response(429, headers={"retry-after": "7"})) == 7.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(httpx.Response(429, headers={"retry-after": date}), now=now) == pytest.approx(30, 1)
    assert retry_after_seconds(httpx.Response(429, headers={"x-ratelimit-reset": str(now + 12)}), now=now) == 12
    assert retry_after_seconds(httpx.Response(429, headers={"x-ratelimit-reset": "4"})) == 4
    assert retry_after_seconds(httpx.Response(429)) is None
