"""Stripe metering from the outbox: one meter event per completed language, none for failed or cancelled ones,
none twice under retries; 429 retried, 400 and 401 given up and recorded (respx fake in Stripe's shapes)."""

from __future__ import annotations

import uuid

import respx

from service.errors import StageError
from service.settings import Settings
from service.stages.context import StageContext
from tests.fakes.stripe import API_KEY, FakeStripe
from tests.support import running_service, wav_bytes
from tests.support.harness import recording, until
from tests.support.service import mint


def _billing(settings: Settings, **overrides: object) -> Settings:
    return settings.with_overrides(stripe_api_key=API_KEY, stripe_meter_event="dubbed_minutes",
                                   webhook_retry_base_seconds=0.2, webhook_retry_max_seconds=1.0, **overrides)


async def _settled(pool, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """Until the job has ended and nothing of it waits in the outbox."""
    await until(lambda: pool.fetchval(
        """SELECT j.status IN ('complete', 'partial', 'failed', 'cancelled')
                  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.state = 'pending')
           FROM jobs j WHERE j.id = $1""", uuid.UUID(job_id)), timeout=20)


async def test_one_meter_event_per_completed_language_even_after_a_429(settings: Settings) -> None:
    stripe = FakeStripe(answers=[429])
    with respx.mock(assert_all_called=False) as router:
        stripe.install(router)
        async with running_service(_billing(settings), registry=recording([])) as svc:
            await svc.pool.execute("INSERT INTO billing_customers (owner_id, stripe_customer_id) VALUES ($1, $2)",
                                   "dee", "cus_Dee123")
            voice = await svc.upload("dee", wav_bytes(90.0))
            created = await svc.client.post("/v1/jobs", headers=svc.auth("dee"), json={
                "voice_object": voice, "source_language": "en", "target_languages": ["es", "fr"]})
            job = created.json()
            await _settled(svc.pool, job["id"])
            # The message that met the 429 is sent again: still one event per language.
            await svc.pool.execute("SELECT ops.resend(id) FROM outbox WHERE job_id = $1 AND destination = 'stripe'",
                                   uuid.UUID(job["id"]))
            await _settled(svc.pool, job["id"])
            tasks = {t["id"] for t in (await svc.client.get(f"/v1/jobs/{job['id']}",
                                                            headers=svc.auth("dee"))).json()["tasks"]}
    assert sorted(e["identifier"] for e in stripe.events) == sorted(tasks)
    assert all(e["payload[stripe_customer_id]"] == "cus_Dee123" and e["payload[value]"] == "2"  # 90 s: 2 minutes
               and e["event_name"] == "dubbed_minutes" for e in stripe.events)
    assert stripe.requests >= 5  # a 429, two events, two re-sends answered from the idempotency key


async def test_failed_languages_bill_nothing_and_the_customer_can_come_from_the_token(settings: Settings) -> None:
    async def broken(ctx: StageContext) -> None:
        if ctx.task.target_language == "fr":
            raise StageError("bad_input", "no", retryable=False)

    stripe = FakeStripe()
    with respx.mock(assert_all_called=False) as router:
        stripe.install(router)
        async with running_service(_billing(settings, stripe_customer_claim="app_metadata.stripe_customer"),
                                   registry=recording([], stt=broken)) as svc:
            token = mint(svc.settings.jwt_secret, "eve")
            import jwt
            claims = jwt.decode(token, svc.settings.jwt_secret, algorithms=["HS256"], audience="authenticated")
            claims["app_metadata"] = {"stripe_customer": "cus_Eve456"}
            headers = {"Authorization": "Bearer " + jwt.encode(claims, svc.settings.jwt_secret, algorithm="HS256")}
            voice = await svc.upload("eve", wav_bytes(1.0))
            created = await svc.client.post("/v1/jobs", headers=headers, json={
                "voice_object": voice, "source_language": "en", "target_languages": ["es", "fr"]})
            await _settled(svc.pool, created.json()["id"])
    assert [(e["payload[stripe_customer_id]"], e["payload[value]"]) for e in stripe.events] == [("cus_Eve456", "1")]


async def test_400_and_401_are_given_up_and_recorded(settings: Settings) -> None:
    stripe = FakeStripe(answers=[400, 401])
    with respx.mock(assert_all_called=False) as router:
        stripe.install(router)
        async with running_service(_billing(settings), registry=recording([])) as svc:
            await svc.pool.execute("INSERT INTO billing_customers VALUES ('fay', 'cus_Fay789')")
            created = await svc.create_job("fay", ["es", "fr"])
            await _settled(svc.pool, created.json()["id"])
            rows = await svc.pool.fetch(
                "SELECT state, last_status, last_error FROM ops.outbox WHERE job_id = $1 AND destination = 'stripe'",
                uuid.UUID(created.json()["id"]))
            no_customer = await svc.create_job("gus", ["es"])  # nobody pays for gus: given up, not billed
            await _settled(svc.pool, no_customer.json()["id"])
            gus = await svc.pool.fetchrow("SELECT state, last_error FROM outbox WHERE job_id = $1",
                                          uuid.UUID(no_customer.json()["id"]))
    assert sorted((r["state"], r["last_status"]) for r in rows) == [("dead", 400), ("dead", 401)]
    assert any("parameter_missing" in r["last_error"] for r in rows)
    assert all(API_KEY not in r["last_error"] for r in rows)
    assert stripe.events == []
    assert gus["state"] == "dead" and "no_billing_customer" in gus["last_error"]
