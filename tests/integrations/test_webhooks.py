"""Webhooks through the real app: events written with the state change, delivered signed, retried with the
same id, every attempt recorded, re-sendable; refused destinations in cloud mode."""

from __future__ import annotations

import base64
import time

from service.settings import Settings
from service.stages.context import StageContext
from tests.support import running_service
from tests.support.harness import Calls, recording, until
from tests.support.webhook_receiver import receiving

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def _webhook_settings(settings: Settings, **overrides: object) -> Settings:
    return settings.with_overrides(webhook_secret=SECRET, webhook_allow_private=True,
                                   webhook_retry_base_seconds=0.2, webhook_retry_max_seconds=1.0, **overrides)


async def test_events_arrive_signed_once_each_after_the_receiver_refused(settings: Settings) -> None:
    calls: Calls = []
    async with receiving(SECRET) as receiver, running_service(
            _webhook_settings(settings), registry=recording(calls)) as svc:
        receiver.refusing_until = time.time() + 1.5  # down at first: retried with the same ids
        created = await svc.create_job("ann", ["es", "fr"], webhook_url=receiver.url)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        await receiver.wait_for(3, timeout=30)
        assert receiver.refused >= 1 and receiver.bad_signatures == 0
        assert receiver.types() == ["job.completed", "language.completed", "language.completed"]
        done = next(d for d in receiver.unique().values() if d.event["type"] == "job.completed")
        assert done.event["data"]["job_id"] == job_id and done.event["data"]["status"] == "complete"
        assert sorted(lang["target_language"] for lang in done.event["data"]["languages"]) == ["es", "fr"]
        outbox_sql = "SELECT * FROM ops.outbox WHERE job_id = $1 AND destination = 'webhook'"
        await until(lambda: svc.pool.fetchval(
            f"SELECT bool_and(state = 'delivered') FROM ({outbox_sql}) m", job_id), timeout=10)
        rows = await svc.pool.fetch(outbox_sql, job_id)
        assert len(rows) == 3 and all(r["attempts"] >= 2 for r in rows)
        attempts = await svc.pool.fetch(
            "SELECT a.* FROM ops.outbox_attempts a JOIN outbox o ON o.id = a.message_id "
            "WHERE o.job_id = $1 AND a.destination = 'webhook'", job_id)
        assert {a["status"] for a in attempts} == {503, 204}
        assert all(a["latency_ms"] > 0 for a in attempts)
        assert any("maintenance" in (a["response_excerpt"] or "") for a in attempts)

        # An operator re-sends one: the same webhook-id arrives again (the receiver deduplicates it).
        message_id = rows[0]["message_id"]
        before = len(receiver.deliveries)
        await svc.pool.execute("SELECT ops.resend($1)", message_id)
        await until(lambda: len(receiver.deliveries) > before, timeout=10)
        assert receiver.deliveries[-1].webhook_id == f"msg_{message_id.hex}"
        assert len(receiver.unique()) == 3


async def test_failed_and_cancelled_jobs_are_announced(settings: Settings) -> None:
    async def broken(ctx: StageContext) -> None:
        from service.errors import StageError
        raise StageError("bad_input", "the voice is silence", retryable=False)

    async def slow(ctx: StageContext) -> None:
        await ctx.progress(0.1)
        import asyncio
        await asyncio.sleep(30)

    async with receiving(SECRET) as receiver:
        async with running_service(_webhook_settings(settings), registry=recording([], stt=broken)) as svc:
            failed = await svc.create_job("bo", ["es"], webhook_url=receiver.url)
            await receiver.wait_for(1)
            assert receiver.types() == ["job.failed"]
            event = next(iter(receiver.unique().values())).event
            assert event["data"]["languages"][0]["error"]["code"] == "bad_input"
            assert await svc.pool.fetchval("SELECT count(*) FROM outbox WHERE job_id = $1 AND destination = 'stripe'",
                                           failed.json()["id"]) == 0
        async with running_service(_webhook_settings(settings), registry=recording([], stt=slow)) as svc:
            job = await svc.create_job("bo", ["es"], webhook_url=receiver.url)
            await until(lambda: svc.pool.fetchval("SELECT stage FROM language_tasks WHERE job_id = $1",
                                                  job.json()["id"]), timeout=10)
            cancelled = await svc.client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=svc.auth("bo"))
            assert cancelled.status_code == 200
            await receiver.wait_for(2)
            assert receiver.types() == ["job.cancelled", "job.failed"]


async def test_cloud_mode_refuses_internal_webhook_urls_and_writes_nothing(settings: Settings) -> None:
    async with running_service(settings.with_overrides(webhook_secret=SECRET, webhook_allow_private=False),
                               run_supervisor=False) as svc:
        before = await svc.count_rows()
        for url in ("http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/",
                    "http://[::1]/hook", "http://localhost:8080/hook"):
            response = await svc.create_job("cy", ["es"], webhook_url=url)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "invalid_webhook_url"
        assert await svc.count_rows() == before
    async with running_service(settings.with_overrides(webhook_secret=""), run_supervisor=False) as svc:
        response = await svc.create_job("cy", ["es"], webhook_url="https://example.com/hook")
        assert (response.status_code, response.json()["error"]["code"]) == (422, "webhooks_disabled")


async def test_delivery_checks_the_address_again_and_never_follows_redirects(settings: Settings) -> None:
    """A URL accepted at creation (local mode) but internal at delivery time (the guard turned on, as a DNS
    change would make it) is not sent to; a redirect is an answer that failed, not a place to go."""
    from service.integrations.webhook_sender import WebhookSender

    sender = WebhookSender(b"k" * 32, allow_private=False, timeout_seconds=2)
    try:
        attempt = await sender.send("http://127.0.0.1:9/hook", "msg_x", {"type": "job.completed"})
        assert not attempt.delivered and not attempt.retry and attempt.status is None
        assert "internal address" in (attempt.error or "")
    finally:
        await sender.aclose()

    async def redirect(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 307, "headers": [(b"location", b"http://10.0.0.1/")]})
        await send({"type": "http.response.body", "body": b""})

    import asyncio
    import socket

    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(redirect, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    sender = WebhookSender(b"k" * 32, allow_private=True, timeout_seconds=2)
    try:
        attempt = await sender.send(f"http://127.0.0.1:{sock.getsockname()[1]}/h", "msg_y", {"type": "x"})
        assert (attempt.delivered, attempt.status, attempt.error) == (False, 307, "redirect not followed")
    finally:
        await sender.aclose()
        server.should_exit = True
        await serving
