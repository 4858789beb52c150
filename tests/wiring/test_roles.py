"""`dubbing serve --role api|worker` as real processes sharing one PostgreSQL, one Redis and one DATA_DIR, dubbing
with the real offline engines through the API process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.sample import make_sample
from service.settings import Settings
from tests.support import ServedProcess, dubbing_command, read_events, served
from tests.support.redis import backend_env

# Short leases so a killed worker's task is taken over in seconds; one CPU worker each (2-core machines).
FAST = {"LEASE_SECONDS": "4", "POLL_INTERVAL_SECONDS": "1", "CPU_WORKERS": "1", "SHUTDOWN_DRAIN_SECONDS": "5"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_sample(tmp_path_factory.mktemp("sample"))


def log_lines(process: ServedProcess) -> list[dict[str, Any]]:
    lines = []
    for line in process.logs().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def started_tasks(process: ServedProcess) -> set[str]:
    return {line["task_id"] for line in log_lines(process) if line.get("event") == "task.started"}


async def start_all(stack: AsyncExitStack, data_dir: Path, database_url: str, env: dict[str, str],
                    workers: int) -> tuple[ServedProcess, list[ServedProcess]]:
    api = await stack.enter_async_context(served(data_dir, database_url, role="api", **env))
    started = [await stack.enter_async_context(served(data_dir, database_url, role="worker", **env))
               for _ in range(workers)]
    return api, started


async def create_job(api: ServedProcess, sample: Any, user: str, targets: list[str]) -> str:
    voice = await api.upload(user, sample.voice, "voice")
    background = await api.upload(user, sample.background, "background")
    created = await api.client.post("/v1/jobs", headers=api.auth(user), json={
        "voice_object": voice, "background_object": background, "source_language": "en",
        "target_languages": targets})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def follow_to_done(api: ServedProcess, user: str, job_id: str) -> list[Any]:
    async with api.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=api.auth(user), timeout=240) as stream:
        return await read_events(stream)


async def test_a_job_through_an_api_process_and_two_workers(tmp_path: Path, database_url: str, sample: Any,
                                                            backend_settings: Settings) -> None:
    env = {**backend_env(backend_settings), **FAST}
    async with AsyncExitStack() as stack:
        api, workers = await start_all(stack, tmp_path / "data", database_url, env, workers=2)
        # A worker answers its probes and nothing else; the API process has no supervisor to report.
        assert (await workers[0].client.get("/v1/languages", headers=api.auth("ada"))).status_code == 404
        assert (await workers[0].client.get("/readyz")).json()["checks"]["supervisor"] is True
        assert "supervisor" not in (await api.client.get("/readyz")).json()["checks"]

        job_id = await create_job(api, sample, "ada", ["es", "ca"])
        history = await follow_to_done(api, "ada", job_id)
        assert history[-1].event == "done" and history[-1].data["status"] == "complete", \
            [w.logs()[-2000:] for w in workers]

        listed = (await api.client.get(f"/v1/jobs/{job_id}/artifacts", headers=api.auth("ada"))).json()["artifacts"]
        assert Counter(a["target_language"] for a in listed) == {"es": 6, "ca": 6, None: 3}
        for artifact in listed:
            body = (await api.client.get(artifact["download_url"])).content
            assert hashlib.sha256(body).hexdigest() == artifact["sha256"]

        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT id::text AS id, claims FROM language_tasks")
        finally:
            await conn.close()
        assert all(r["claims"] == 1 for r in rows)
        ran = [started_tasks(w) for w in workers]
        assert set().union(*ran) == {r["id"] for r in rows}
        assert started_tasks(api) == set(), "an api process never claims"
        transcribed = sum(1 for w in workers for line in log_lines(w) if line.get("event") == "stt.done")
        assert transcribed == 1, "the job's speech is transcribed once, whichever workers run its languages"
        if backend_settings.queue_backend == "dramatiq":
            assert all(ran), "idle workers share a job's languages"


async def test_a_worker_killed_mid_stage_is_recovered_once(tmp_path: Path, database_url: str, sample: Any,
                                                         backend_settings: Settings) -> None:
    env = {**backend_env(backend_settings), **FAST}
    async with AsyncExitStack() as stack:
        api, workers = await start_all(stack, tmp_path / "data", database_url, env, workers=2)
        job_id = await create_job(api, sample, "bo", ["es"])
        conn = await asyncpg.connect(database_url)
        stack.push_async_callback(conn.close)

        async def holder_mid_stage() -> str:
            while True:
                owner = await conn.fetchval(
                    "SELECT lease_owner FROM language_tasks WHERE stage IN ('dubbing', 'mixing') "
                    "AND lease_owner IS NOT NULL")
                if owner:
                    return str(owner)
                await asyncio.sleep(0.02)

        owner = await asyncio.wait_for(holder_mid_stage(), 120)
        pid = int(owner.split(":")[1])
        [victim] = [w for w in workers if w.process.pid == pid]
        os.killpg(pid, signal.SIGKILL)  # the worker and its CPU workers, like a machine that dies
        await victim.process.wait()

        history = await follow_to_done(api, "bo", job_id)
        assert history[-1].data["status"] == "complete", [w.logs()[-2000:] for w in workers]
        row = await conn.fetchrow("SELECT stage, attempts, claims FROM language_tasks")
        assert (row["stage"], row["attempts"], row["claims"]) == ("complete", 1, 2)
        entered = [e.data["stage"] for e in history if e.event == "stage"]
        assert entered == ["queued", "stt", "translating", "dubbing", "mixing", "exporting", "complete"], entered
        listed = (await api.client.get(f"/v1/jobs/{job_id}/artifacts", headers=api.auth("bo"))).json()["artifacts"]
        assert sorted(a["kind"] for a in listed if a["target_language"] == "es") == sorted(
            ["master_wav", "master_web", "voice_stem", "captions_srt", "captions_vtt", "manifest"])
        stored = {str(p.relative_to(tmp_path / "data" / "storage" / "dubbing"))
                  for p in (tmp_path / "data" / "storage" / "dubbing").rglob("*")
                  if p.is_file() and f"/jobs/{job_id}/" in str(p)}
        assert stored == {a["object_path"] for a in listed}, "exactly one set of artifacts, nothing half-written"
        survivor = next(w for w in workers if w is not victim)
        assert started_tasks(survivor) == {str(await conn.fetchval("SELECT id FROM language_tasks"))}


def test_api_and_worker_roles_need_a_shared_database(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    for role in ("api", "worker"):
        done = subprocess.run([dubbing_command(), "serve", "--role", role], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2
        assert "needs DATABASE_URL" in done.stderr
