"""Logs as an operator follows a job: every line about a task carries its job, task, stage, attempt and engine;
each stage ends with one line giving its duration and figures; provider calls carry the provider's request id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import structlog
from structlog.testing import capture_logs

from service.providers.http import ProviderClient
from service.settings import Settings
from service.stages.context import StageContext
from tests.support import read_events, running_service, served, wav_bytes

TASK_KEYS = {"job_id", "task_id", "stage", "attempt", "engine"}


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_a_jobs_json_lines_carry_its_task_context(tmp_path: Path, database_url: str) -> None:
    async with served(tmp_path / "data", database_url) as svc:  # LOG_FORMAT=json, as in production
        voice = tmp_path / "voice.wav"
        voice.write_bytes(wav_bytes(2.0))
        path = await svc.upload("lou", voice, "voice")
        created = await svc.client.post("/v1/jobs", headers=svc.auth("lou"), json={
            "voice_object": path, "source_language": "en", "target_languages": ["es"]})
        job_id = created.json()["id"]
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("lou"),
                                     timeout=120) as stream:
            history = await read_events(stream)
        assert history[-1].data["status"] == "complete"
        # The runner logs `task.finished` just after the transition the stream reported: wait for that line.
        async with asyncio.timeout(30):
            while not any(line.get("event") == "task.finished" for line in json_lines(svc.logs())):
                await asyncio.sleep(0.05)
        lines = json_lines(svc.logs())

    # What `jq 'select(.job_id == "<id>")'` shows: the task's lines, each with the whole context.
    of_job = [line for line in lines if line.get("job_id") == job_id]
    about_tasks = [line for line in lines if "task_id" in line]
    assert len(about_tasks) >= 8 and all(line in of_job for line in about_tasks)
    for line in about_tasks:
        assert TASK_KEYS <= set(line), line
        assert line["attempt"] == 1 and line["target_language"] == "es"
    stages = [line for line in of_job if line["event"] == "stage.finished"]
    assert [(s["stage"], s["engine"]) for s in stages] == [
        ("stt", "faster-whisper"), ("translating", "apertium"), ("dubbing", "espeak-ng"), ("mixing", "builtin"),
        ("exporting", "builtin")]
    for line in stages:
        assert line["seconds"] > 0 and line["audio_seconds"] == 2.0, line
    assert "segments" in stages[0] and "characters" in stages[1] and "clips" in stages[2]
    assert stages[4]["artifacts"] == 6 and stages[4]["bytes"] > 0
    assert [line["event"] for line in of_job if line["event"].startswith("task.")] == ["task.started", "task.finished"]


async def test_provider_calls_in_a_task_carry_its_context_and_the_request_id(settings: Settings) -> None:
    def provider(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"x-request-id": "req_abc123"}, json={"ok": True})

    client = ProviderClient("example", "https://provider.test", {}, transport=httpx.MockTransport(provider))

    async def stt(ctx: StageContext) -> None:
        await client.json("POST", "/v1/things", endpoint="things")

    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            async with running_service(settings, registry={"stt": stt}) as svc:
                job = (await svc.create_job("max", ["es"])).json()
                async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth("max"),
                                             timeout=60) as stream:
                    await read_events(stream)
    finally:
        await client.aclose()
    calls = [line for line in logs if line["event"] == "provider.request"]
    assert len(calls) == 1
    call = calls[0]
    assert call["provider_request_id"] == "req_abc123" and call["status"] == 200
    assert (call["job_id"], call["stage"], call["attempt"], call["engine"]) == (job["id"], "stt", 1, "none")
    assert call["task_id"] == job["tasks"][0]["id"]
