"""Server-sent progress events over real HTTP: live, resumed with Last-Event-ID, and closing on done."""

from __future__ import annotations

import asyncio
from typing import Any

from service.domain import WORK_STAGES
from service.settings import Settings
from service.stages.context import StageContext, StageFn
from tests.support import Service, read_events, running_service


def gated_stages(gate: asyncio.Event) -> dict[str, StageFn]:
    async def stage(ctx: StageContext) -> None:
        if ctx.stage == "stt":
            await gate.wait()
        for step in (1, 2):
            await ctx.progress(step / 2, segment=step)

    return dict.fromkeys(WORK_STAGES, stage)


async def _job(service: Service, user: str, targets: list[str]) -> dict[str, Any]:
    response = await service.create_job(user, targets)
    assert response.status_code == 201
    return dict(response.json())


async def test_live_stream_then_resume_from_last_event_id(settings: Settings) -> None:
    gate = asyncio.Event()
    async with running_service(settings.with_overrides(sse_keepalive_seconds=0.2), gated_stages(gate)) as svc:
        job = await _job(svc, "alice", ["es", "fr"])
        url = f"/v1/jobs/{job['id']}/events"
        async with svc.client.stream("GET", url, headers=svc.auth("alice")) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            first = await read_events(response, limit=2)
            gate.set()
            rest = await read_events(response)
        live = first + rest
        ids = [e.id for e in live]
        assert ids == list(range(1, len(live) + 1)), "sequence numbers are contiguous and ordered"
        assert live[-1].event == "done" and live[-1].data["status"] == "complete"
        for language in ("es", "fr"):
            mine = [e for e in live if e.data["target_language"] == language]
            stages = [e.data["stage"] for e in mine if e.event == "stage"]
            assert stages == ["queued", *WORK_STAGES, "complete"]
            progress = [e.data["progress"] for e in mine]
            assert progress == sorted(progress) and progress[-1] == 1.0
            assert all({"task_id", "target_language", "stage", "progress", "at"} <= set(e.data) for e in mine)

        # A client that saw up to event 7 reconnects and gets exactly the rest.
        async with svc.client.stream("GET", url, headers={**svc.auth("alice"), "Last-Event-ID": "7"}) as response:
            resumed = await read_events(response)
        assert [e.id for e in resumed] == ids[7:]
        assert [e.data for e in resumed] == [e.data for e in live[7:]]


async def test_keepalive_comments_while_nothing_happens(settings: Settings) -> None:
    gate = asyncio.Event()
    async with running_service(settings.with_overrides(sse_keepalive_seconds=0.1), gated_stages(gate)) as svc:
        job = await _job(svc, "bob", ["es"])
        comments = 0
        async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth("bob")) as response:
            async for line in response.aiter_lines():
                if line.startswith(": keep-alive"):
                    comments += 1
                    if comments == 2:
                        break
        gate.set()
        assert comments == 2


async def test_many_streams_share_one_listener(settings: Settings) -> None:
    gate = asyncio.Event()
    async with running_service(settings, gated_stages(gate)) as svc:
        job = await _job(svc, "carol", ["es"])
        url = f"/v1/jobs/{job['id']}/events"

        async def watch() -> list[int | None]:
            async with svc.client.stream("GET", url, headers=svc.auth("carol")) as response:
                return [e.id for e in await read_events(response)]

        watchers = [asyncio.create_task(watch()) for _ in range(20)]
        listener = svc.services.listener
        while listener.open_streams < 20:
            await asyncio.sleep(0.01)
        listening = await svc.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'")
        gate.set()
        results = await asyncio.gather(*watchers)
        assert all(r == results[0] for r in results) and results[0][-1] is not None
        assert listening == 1, "one LISTEN connection serves every stream"


async def test_stream_of_a_finished_job_replays_and_closes(settings: Settings) -> None:
    gate = asyncio.Event()
    gate.set()
    async with running_service(settings, gated_stages(gate)) as svc:
        job = await _job(svc, "dan", ["es"])
        async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth("dan")) as response:
            everything = await read_events(response)
        async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth("dan")) as response:
            again = await read_events(response)
        assert everything == again and everything[-1].event == "done"
        bad = await svc.client.get(f"/v1/jobs/{job['id']}/events",
                                   headers={**svc.auth("dan"), "Last-Event-ID": "abc"})
        assert bad.status_code == 400
