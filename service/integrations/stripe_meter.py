"""Reporting a completed language to Stripe as a billing meter event (`POST /v1/billing/meter_events`).

Form-encoded: `event_name` (STRIPE_METER_EVENT), `payload[stripe_customer_id]`, `payload[value]` (the
dubbed minutes, rounded up to whole minutes: Stripe meters take whole numbers), `identifier` (the task id:
Stripe keeps identifiers unique for at least a day) and `timestamp` (when the language completed). The same
id goes in the `Idempotency-Key` header, so a retry after a crash gets Stripe's first answer back instead of
a second event. Retries are the outbox's: this client makes one attempt per call.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from service.errors import ProviderError
from service.integrations.attempts import Attempt, excerpt
from service.providers.errors import error_parser
from service.providers.http import ProviderClient, RetryPolicy

ENDPOINT = "/v1/billing/meter_events"


def _extract(body: Any) -> tuple[str | None, str | None]:
    """Stripe's error body: {"error": {"type", "code", "message", "param"}}."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    return error.get("code") or error.get("type"), error.get("message")


def whole_minutes(seconds: float) -> int:
    """Dubbed minutes as Stripe bills them: every started minute, at least one."""
    return max(1, math.ceil(round(seconds, 3) / 60))


def meter_form(event_name: str, customer: str, payload: dict[str, Any]) -> dict[str, str]:
    return {"event_name": event_name, "payload[stripe_customer_id]": customer,
            "payload[value]": str(whole_minutes(float(payload["dubbed_seconds"]))),
            "identifier": str(payload["task_id"]), "timestamp": str(int(payload["timestamp"]))}


class StripeMeter:
    def __init__(self, api_key: str, base_url: str, event_name: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.event_name = event_name
        self.client = ProviderClient(
            "stripe", base_url, {"authorization": f"Bearer {api_key}"}, concurrency=1,
            policy=RetryPolicy(attempts=1, total_timeout=30), error_parser=error_parser(_extract, api_key),
            request_id_headers=("request-id",), transport=transport)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def report(self, customer: str, payload: dict[str, Any]) -> Attempt:
        """One meter event for one completed language."""
        started = time.perf_counter()
        form = meter_form(self.event_name, customer, payload)
        try:
            response = await self.client.send("POST", ENDPOINT, endpoint="meter_events", data=form,
                                              headers={"idempotency-key": f"meter-{payload['task_id']}"})
        except ProviderError as exc:
            ms = round((time.perf_counter() - started) * 1000, 2)
            return Attempt(False, exc.status, ms, f"{exc.code}: {exc.message}"[:500], excerpt(exc.message),
                           retry=exc.retryable)
        ms = round((time.perf_counter() - started) * 1000, 2)
        return Attempt(True, response.status_code, ms, None, excerpt(response.text))
