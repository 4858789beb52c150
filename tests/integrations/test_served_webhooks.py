"""Webhooks from the real `dubbing serve`: a job dubbed offline, its events signed and verified by a receiver
with the `standardwebhooks` package; the receiver is down when the job ends, the process is killed (-9) with
the events committed but not delivered, and the next process delivers every one of them, with the same ids."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import asyncpg

from service.sample import make_sample
from tests.support import read_events, served
from tests.support.harness import until
from tests.support.webhook_receiver import receiving

SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()
ENV = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_RETRY_BASE_SECONDS": "0.5", "WEBHOOK_RETRY_MAX_SECONDS": "1"}


async def test_kill_9_between_commit_and_delivery_loses_nothing(tmp_path: Path, database_url: str) -> None:
    sample = make_sample(tmp_path / "sample")
    async with receiving(SECRET) as receiver:
        receiver.refusing_until = time.time() + 3600  # down until the first process is gone
        async with served(tmp_path / "data", database_url, **ENV) as svc:
            voice = await svc.upload("kim", sample.voice, "voice")
            created = await svc.client.post("/v1/jobs", headers=svc.auth("kim"), json={
                "voice_object": voice, "source_language": "en", "target_languages": ["es"],
                "webhook_url": receiver.url})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("kim"),
                                         timeout=240) as stream:
                history = await read_events(stream)
            assert history[-1].event == "done", svc.logs()[-3000:]
            conn = await asyncpg.connect(database_url)
            try:
                pending = "SELECT count(*) FROM outbox WHERE job_id = $1::uuid AND destination = 'webhook' " \
                          "AND state = 'pending'"
                await until(lambda: receiver.refused >= 2, timeout=20)  # both events tried, refused
                assert await conn.fetchval(pending, job_id) == 2
                refused_ids = {r[0] for r in await conn.fetch(
                    "SELECT 'msg_' || replace(id::text, '-', '') FROM outbox WHERE job_id = $1::uuid "
                    "AND destination = 'webhook'", job_id)}
            finally:
                await conn.close()
            os.killpg(svc.process.pid, signal.SIGKILL)  # a machine that dies: no drain, no goodbye
            await svc.process.wait()
        receiver.refusing_until = 0
        async with served(tmp_path / "data", database_url, **ENV):
            await receiver.wait_for(2, timeout=60)
    assert receiver.types() == ["job.completed", "language.completed"]
    assert set(receiver.unique()) == refused_ids  # the same webhook-ids the first process tried
    assert receiver.bad_signatures == 0 and all(d.verified for d in receiver.deliveries)
    completed = next(d for d in receiver.unique().values() if d.event["type"] == "language.completed")
    assert completed.event["data"]["job_id"] == job_id and completed.event["data"]["target_language"] == "es"
