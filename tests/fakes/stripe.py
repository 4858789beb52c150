"""Stripe's meter events endpoint answered by respx, in its documented shapes.

`POST /v1/billing/meter_events`, form-encoded, `Authorization: Bearer sk_…`; success is the Meter Event object
(`{"object": "billing.meter_event", "created", "event_name", "identifier", "livemode", "payload", "timestamp"}`),
errors are `{"error": {"type", "code", "message", "param"}}` with 400 (a missing parameter), 401 (a bad key)
and 429 (rate limited). A repeated `Idempotency-Key` gets the first answer again, as Stripe's API does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import respx

STRIPE = "https://api.stripe.com"
API_KEY = "sk_test_FAKESTRIPEKEY123"
REQUIRED = ("event_name", "payload[stripe_customer_id]", "payload[value]")


def stripe_error(status: int, type_: str, message: str, code: str | None = None,
                 param: str | None = None) -> httpx.Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return httpx.Response(status, json={"error": error}, headers={"request-id": "req_fake"})


@dataclass
class FakeStripe:
    events: list[dict[str, str]] = field(default_factory=list)  # each event Stripe recorded (once per key)
    requests: int = 0
    answers: list[int] = field(default_factory=list)  # statuses to answer first (429, 400, 401), then normal
    _replies: dict[str, httpx.Response] = field(default_factory=dict)

    def install(self, router: respx.MockRouter) -> None:
        router.route(host="127.0.0.1").pass_through()
        router.post(f"{STRIPE}/v1/billing/meter_events").mock(side_effect=self.meter_event)

    def meter_event(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
        key = request.headers.get("idempotency-key")
        if key and key in self._replies:
            return self._replies[key]
        if self.answers:
            status = self.answers.pop(0)
            if status == 429:
                return stripe_error(429, "invalid_request_error", "Request rate limit exceeded.", "rate_limit")
            if status == 401:
                return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
            return stripe_error(400, "invalid_request_error", "Missing required param: event_name.",
                                "parameter_missing", "event_name")
        form = dict(parse_qsl(request.content.decode()))
        missing = [name for name in REQUIRED if not form.get(name)]
        if missing:
            return stripe_error(400, "invalid_request_error", f"Missing required param: {missing[0]}.",
                                "parameter_missing", missing[0])
        if not form["payload[value]"].isdigit():
            return stripe_error(400, "invalid_request_error", "Value must be a whole number.", "parameter_invalid",
                                "payload[value]")
        self.events.append(form)
        reply = httpx.Response(200, json={
            "object": "billing.meter_event", "created": int(time.time()), "event_name": form["event_name"],
            "identifier": form.get("identifier", "generated"), "livemode": False,
            "payload": {"stripe_customer_id": form["payload[stripe_customer_id]"], "value": form["payload[value]"]},
            "timestamp": int(form.get("timestamp", time.time()))})
        if key:
            self._replies[key] = reply
        return reply
