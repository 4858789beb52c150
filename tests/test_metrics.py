"""`GET /metrics`: off without METRICS_TOKEN, 401 without the token, and after a real job the figures an operator
watches have moved. With several processes each reports its own work (Prometheus scrapes each; the sums add up)
and the same queue figures from the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.settings import Settings
from tests.support import read_events, running_service, served, wav_bytes
from tests.support.metrics import AUTH, TOKEN, scrape, total, value

STAGE_ENGINES = {"stt": "faster-whisper", "translating": "apertium", "dubbing": "espeak-ng", "mixing": "builtin",
                 "exporting": "builtin"}


async def test_metrics_are_off_without_a_token_and_closed_without_the_right_one(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        off = await svc.client.get("/metrics", headers=AUTH)
        assert off.status_code == 404 and off.json()["error"]["code"] == "not_found"
    async with running_service(settings.with_overrides(metrics_token=TOKEN), run_supervisor=False) as svc:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        svc.auth("alice")):  # a user's access token is not the metrics token
            refused = await svc.client.get("/metrics", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in refused.text
        samples = await scrape(svc.client)
        assert value(samples, "dubbing_database_up") == 1
        assert value(samples, "dubbing_tasks", stage="queued") == 0
        assert value(samples, "dubbing_pool_workers") == settings.cpu_workers
        assert value(samples, "dubbing_db_pool_connections") >= 1


async def test_a_real_job_moves_the_metrics(settings: Settings) -> None:
    async with running_service(settings.with_overrides(metrics_token=TOKEN), pipeline=True) as svc:
        before = await scrape(svc.client)
        job = (await svc.create_job("mia", ["es"])).json()
        async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth("mia"),
                                     timeout=120) as stream:
            await read_events(stream, limit=1)
            during = await scrape(svc.client)
            history = await read_events(stream)
        after = await scrape(svc.client)
        listed = (await svc.client.get(f"/v1/jobs/{job['id']}/artifacts", headers=svc.auth("mia"))).json()

    assert history[-1].event == "done" and history[-1].data["status"] == "complete"
    assert value(during, "dubbing_sse_streams_open") == 1 and value(after, "dubbing_sse_streams_open") == 0

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dubbing_tasks_finished_total", outcome="complete", error_code="") == 1
    assert moved("dubbing_tasks_claimed_total") == 1
    assert moved("dubbing_claim_latency_seconds_count") >= 1
    for stage, engine in STAGE_ENGINES.items():
        assert moved("dubbing_stage_duration_seconds_count", stage=stage, engine=engine) == 1, stage
        assert moved("dubbing_stage_duration_seconds_sum", stage=stage, engine=engine) > 0, stage
    master = next(a for a in listed["artifacts"] if a["kind"] == "master_wav")
    assert moved("dubbing_artifact_bytes_written_total", kind="master_wav") == master["size_bytes"]
    assert moved("dubbing_artifacts_written_total", kind="manifest") == 1
    assert total(after, "dubbing_event_loop_lag_seconds_count") > total(before, "dubbing_event_loop_lag_seconds_count")
    assert value(after, "dubbing_tasks", stage="queued") == 0 and value(after, "dubbing_tasks_stalled") == 0
    assert value(after, "dubbing_pool_calls_in_flight") == 0


async def test_several_processes_each_report_their_own_work(tmp_path: Path, database_url: str) -> None:
    """Two `dubbing serve` processes on one database, as the scale-out runs them: each /metrics counts what that
    process did, so their sum is the whole; the database's queue figures are the same on both."""
    shared = tmp_path / "data"  # one DATA_DIR (storage, scratch) on a disk both processes see
    env = {"METRICS_TOKEN": TOKEN, "MAX_CONCURRENT_TASKS": "1", "CPU_WORKERS": "1", "DATA_DIR": str(shared)}
    async with served(tmp_path / "one", database_url, **env) as one, \
            served(tmp_path / "two", database_url, **env) as two:
        voice_path = tmp_path / "voice.wav"
        voice_path.write_bytes(wav_bytes(2.0))
        voice = await one.upload("noa", voice_path, "voice")
        created = await one.client.post("/v1/jobs", headers=one.auth("noa"), json={
            "voice_object": voice, "source_language": "en", "target_languages": ["es", "ca"]})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        async with one.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=one.auth("noa"),
                                     timeout=240) as stream:
            history = await read_events(stream)
        assert history[-1].event == "done" and history[-1].data["status"] == "complete", (one.logs()[-2000:],
                                                                                          two.logs()[-2000:])
        first, second = await asyncio.gather(scrape(one.client), scrape(two.client))

    complete = [value(s, "dubbing_tasks_finished_total", outcome="complete", error_code="") for s in (first, second)]
    claimed = [value(s, "dubbing_tasks_claimed_total") for s in (first, second)]
    assert sum(complete) == 2 and sum(claimed) == 2, (complete, claimed)
    for stage, engine in STAGE_ENGINES.items():
        runs = sum(value(s, "dubbing_stage_duration_seconds_count", stage=stage, engine=engine)
                   for s in (first, second))
        assert runs == 2, stage
    for stage in ("queued", "stt", "mixing"):  # read from the database: equal on both
        assert value(first, "dubbing_tasks", stage=stage) == value(second, "dubbing_tasks", stage=stage) == 0
    assert value(first, "dubbing_retention_last_success_timestamp_seconds") == value(
        second, "dubbing_retention_last_success_timestamp_seconds") > 0
