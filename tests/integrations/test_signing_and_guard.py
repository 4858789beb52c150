"""Signatures as a receiver checks them (the `standardwebhooks` package), and the SSRF guard's refusals."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.errors import UnsafeDestination
from service.integrations import signing, url_guard

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_our_signature_verifies_with_the_standard_webhooks_package() -> None:
    body = b'{"type":"job.completed","data":{"job_id":"j"}}'
    headers = signing.headers(signing.secret_bytes(SECRET), "msg_1", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers)["type"] == "job.completed"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_secrets_must_be_whsec_base64() -> None:
    for bad in ("k" * 40, "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            signing.secret_bytes(bad)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook", "http://localhost/hook", "https://192.168.1.20/hook", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/", "http://100.64.0.1/", "http://[fd00::1]/", "http://[fe80::1]/"])
async def test_internal_destinations_are_refused_in_cloud_mode(url: str) -> None:
    with pytest.raises(UnsafeDestination) as refused:
        await url_guard.check(url, allow_private=False)
    assert not refused.value.retryable
    assert (await url_guard.check(url, allow_private=True)).url == url  # local mode takes them


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "http://user:pw@example.com/",
                                 "javascript:alert(1)"])
async def test_what_is_not_an_http_url_is_refused_even_in_local_mode(url: str) -> None:
    with pytest.raises(UnsafeDestination):
        await url_guard.check(url, allow_private=True)


async def test_a_public_address_is_taken_and_pinned() -> None:
    checked = await url_guard.check("https://93.184.216.34:8443/hook?x=1", allow_private=False)
    assert (checked.address, checked.port, checked.scheme) == ("93.184.216.34", 8443, "https")
