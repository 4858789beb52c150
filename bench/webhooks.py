"""Webhook delivery: latency after the state change with the receiver up, and a receiver that refuses for a
while then accepts (every event arrives, each once by its webhook-id, every signature verifies).

The service runs in this process (the real app under uvicorn, the real outbox, delivery loop and signing) with
stages that finish at once, so what is timed is the delivery path; the receiver verifies each delivery with the
`standardwebhooks` package. Latency is from the outbox row's `created_at` (the state change's transaction) to
the receiver's arrival time, same machine clock.

    .venv/bin/python bench/webhooks.py                  # 60 jobs x 2 languages; refuse 120 s, production backoff
    .venv/bin/python bench/webhooks.py --quick          # 20 jobs; refuse 12 s with a 0.5 s backoff base
    .venv/bin/python bench/webhooks.py --refuse-seconds 120 --retry-base 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from _lib import ADMIN_URL, machine
from _lib.results import latency_summary_ms, write_results

from service.logs import configure as configure_logs
from tests.support import make_settings, running_service, scratch_database, wav_bytes
from tests.support.harness import recording
from tests.support.webhook_receiver import Receiver, receiving

SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


async def make_jobs(svc: Any, receiver: Receiver, count: int, languages: list[str]) -> list[str]:
    voice = await svc.upload("bench", wav_bytes(1.0))
    ids = []
    for _ in range(count):
        response = await svc.client.post("/v1/jobs", headers=svc.auth("bench"), json={
            "voice_object": voice, "source_language": "en", "target_languages": languages,
            "webhook_url": receiver.url})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def latency(url: str, jobs: int) -> dict[str, Any]:
    settings = make_settings(Path(tempfile.mkdtemp()), url, webhook_secret=SECRET, webhook_allow_private=True,
                             max_concurrent_tasks=8)
    async with receiving(SECRET) as receiver, running_service(settings, registry=recording([])) as svc:
        await make_jobs(svc, receiver, jobs, ["es", "fr"])
        await receiver.wait_for(jobs * 3, timeout=120)
        created = {f"msg_{r['id'].hex}": r["created"] for r in await svc.pool.fetch(
            "SELECT id, extract(epoch FROM created_at)::float8 AS created FROM outbox WHERE destination = 'webhook'")}
    delays = [d.received_at - created[i] for i, d in receiver.unique().items()]
    summary = latency_summary_ms(delays)
    print(f"delivery after the state change ({len(delays)} webhooks, receiver up): p50 {summary['p50_ms']} ms, "
          f"p99 {summary['p99_ms']} ms, max {summary['max_ms']} ms")
    return {"messages": len(delays), **summary, "bad_signatures": receiver.bad_signatures}


async def refused_then_accepted(url: str, jobs: int, refuse_seconds: float, retry_base: float) -> dict[str, Any]:
    settings = make_settings(Path(tempfile.mkdtemp()), url, webhook_secret=SECRET, webhook_allow_private=True,
                             webhook_retry_base_seconds=retry_base, max_concurrent_tasks=8)
    async with receiving(SECRET) as receiver, running_service(settings, registry=recording([])) as svc:
        started = time.time()
        receiver.refusing_until = started + refuse_seconds
        await make_jobs(svc, receiver, jobs, ["es", "fr"])
        expected = jobs * 3
        await receiver.wait_for(expected, timeout=refuse_seconds + 20 * retry_base + 600)
        all_in = time.time()
        await asyncio.sleep(1.0)  # anything sent twice would show now
        attempts = await svc.pool.fetchval(
            "SELECT count(*) FROM outbox_attempts a JOIN outbox o ON o.id = a.outbox_id "
            "WHERE o.destination = 'webhook'")
    unique = receiver.unique()
    result = {"jobs": jobs, "expected_events": expected, "distinct_events_received": len(unique),
              "deliveries_accepted": len(receiver.deliveries),
              "duplicates_seen_by_receiver": len(receiver.deliveries) - len(unique),
              "refused_requests": receiver.refused, "bad_signatures": receiver.bad_signatures,
              "attempts_recorded": attempts, "refuse_seconds": refuse_seconds, "retry_base_seconds": retry_base,
              "all_delivered_after_seconds": round(all_in - started, 1),
              "after_receiver_came_back_seconds": round(all_in - started - refuse_seconds, 1)}
    print(f"receiver refusing {refuse_seconds:g} s (backoff base {retry_base:g} s): {len(unique)}/{expected} "
          f"events arrived, {result['duplicates_seen_by_receiver']} duplicates, {receiver.bad_signatures} bad "
          f"signatures, {receiver.refused} refusals; all in {result['all_delivered_after_seconds']} s "
          f"({result['after_receiver_came_back_seconds']} s after it came back)")
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--refuse-seconds", type=float, default=None)
    parser.add_argument("--retry-base", type=float, default=None)
    args = parser.parse_args()
    configure_logs("console", "warning")
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    jobs = 20 if args.quick else args.jobs
    refuse = args.refuse_seconds if args.refuse_seconds is not None else (12.0 if args.quick else 120.0)
    base = args.retry_base if args.retry_base is not None else (0.5 if args.quick else 5.0)
    async with scratch_database(ADMIN_URL, prefix="webhooks") as url:
        up = await latency(url, jobs)
    async with scratch_database(ADMIN_URL, prefix="webhooks") as url:
        down = await refused_then_accepted(url, max(jobs // 2, 5), refuse, base)
    write_results("webhooks", {"machine": machine.environment(), "receiver_up": up, "refused_then_accepted": down},
                  quick=args.quick)


if __name__ == "__main__":
    asyncio.run(main())
