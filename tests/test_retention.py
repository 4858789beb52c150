"""Retention removes what has expired (artifacts, inputs of finished jobs, unused uploads, finished jobs' scratch)
from storage and marks the rows; nothing else is touched. Two runs at once share the work; the service runs it on
a schedule where one process wins; `dubbing retention --dry-run` only counts."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from service import retention
from service.db import artifacts, connection, jobs
from service.db.artifacts import NewArtifact
from service.db.jobs import InputObject, NewJob
from service.settings import Settings
from service.storage.local import LocalStorage
from tests.support import JWT_SECRET, Service, dubbing_command, running_service, wav_bytes


async def finish_job(pool: asyncpg.Pool, job_id: str, hours_ago: float, stage: str = "complete") -> None:
    """The job's tasks ended `hours_ago` (what the supervisor leaves behind, dated back)."""
    await pool.execute(
        """UPDATE language_tasks SET stage = $2, progress = CASE WHEN $2 = 'complete' THEN 1 ELSE progress END,
                  error_code = CASE WHEN $2 = 'failed' THEN 'some_error' END,
                  error_message = CASE WHEN $2 = 'failed' THEN 'It went wrong' END,
                  finished_at = now() - make_interval(secs => $3::float8 * 3600)
           WHERE job_id = $1::uuid""", job_id, stage, hours_ago)
    await pool.execute("SELECT refresh_job_status($1::uuid)", job_id)


async def add_artifact(svc: Service, job_id: str, user: str, name: str, expired: bool, source: Path) -> str:
    path = f"{user}/jobs/{job_id}/source/{name}"
    await svc.services.storage.write_file(path, str(source), "application/x-subrip")
    kind = {"a.srt": "transcript_srt", "b.vtt": "transcript_vtt", "c.json": "transcript_json"}[name]
    await artifacts.record(svc.pool, NewArtifact(uuid.UUID(job_id), None, None, kind, path, "0" * 64,
                                                 source.stat().st_size, "application/x-subrip"), timedelta(hours=48))
    if expired:
        await svc.pool.execute("UPDATE artifacts SET created_at = now() - interval '3 days', "
                               "expires_at = now() - interval '1 day' WHERE object_path = $1", path)
    return path


async def test_expired_artifacts_are_deleted_and_marked(settings: Settings, tmp_path: Path) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        job = (await svc.create_job("rita", ["es"])).json()
        storage = svc.services.storage
        source = tmp_path / "file.srt"
        source.write_text("1\n00:00:00,000 --> 00:00:01,000\nhola\n")
        kept_path = await add_artifact(svc, job["id"], "rita", "a.srt", False, source)
        old_path = await add_artifact(svc, job["id"], "rita", "b.vtt", True, source)

        report = await retention.run(svc.pool, storage, settings)
        assert (report.artifacts, report.artifact_bytes) == (1, source.stat().st_size)
        assert await storage.stat(old_path) is None
        assert await storage.stat(kept_path) is not None
        rows = {r["object_path"]: r["deleted_at"] for r in await svc.pool.fetch("SELECT * FROM artifacts")}
        assert rows[old_path] is not None and rows[kept_path] is None
        listed = (await svc.client.get(f"/v1/jobs/{job['id']}/artifacts", headers=svc.auth("rita"))).json()
        assert [a["object_path"] for a in listed["artifacts"]] == [kept_path]
        again = await retention.run(svc.pool, storage, settings)
        assert again.artifacts == 0


async def test_inputs_go_input_ttl_after_the_job_finished_and_the_job_stays(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        storage = svc.services.storage
        old = (await svc.create_job("sam", ["es"])).json()  # finished 49 h ago: its inputs go
        recent = (await svc.create_job("sam", ["es"])).json()  # finished an hour ago: kept
        running = (await svc.create_job("sam", ["es", "fr"])).json()  # not finished: kept
        await finish_job(svc.pool, old["id"], 49, "failed")
        await finish_job(svc.pool, recent["id"], 1)
        # Two jobs from one upload: the older one's expiry must not take the newer one's voice.
        shared_voice = await svc.upload("sam", wav_bytes(1.5))
        body = {"voice_object": shared_voice, "source_language": "en", "target_languages": ["es"]}
        first = (await svc.client.post("/v1/jobs", headers=svc.auth("sam"), json=body)).json()
        second = (await svc.client.post("/v1/jobs", headers=svc.auth("sam"),
                                        json={**body, "target_languages": ["fr"]})).json()
        await finish_job(svc.pool, first["id"], 72)

        report = await retention.run(svc.pool, storage, settings)
        assert (report.input_jobs, report.inputs) == (2, 1)  # `first`'s voice is still `second`'s
        assert report.input_bytes == old["inputs"]["voice"]["size_bytes"]
        assert await storage.stat(old["inputs"]["voice"]["object_path"]) is None
        for kept in (recent, running, second):
            assert await storage.stat(kept["inputs"]["voice"]["object_path"]) is not None

        shown = (await svc.client.get(f"/v1/jobs/{old['id']}", headers=svc.auth("sam"))).json()
        assert shown["status"] == "failed" and shown["tasks"][0]["stage"] == "failed"
        assert shown["inputs"]["voice"]["deleted_at"] is not None
        assert shown["inputs"]["voice"]["sha256"] == old["inputs"]["voice"]["sha256"]  # the history stays
        assert (await svc.client.get(f"/v1/jobs/{old['id']}/inputs", headers=svc.auth("sam"))).json() == {
            "inputs": []}
        for kept in (recent, running):
            assert (await svc.client.get(f"/v1/jobs/{kept['id']}", headers=svc.auth("sam"))).json()[
                "inputs"]["voice"]["deleted_at"] is None
        upload_deleted = await svc.pool.fetchval("SELECT deleted_at FROM uploads WHERE object_path = $1",
                                                 old["inputs"]["voice"]["object_path"])
        assert upload_deleted is not None
        again = await svc.client.post("/v1/jobs", headers=svc.auth("sam"), json={
            "voice_object": old["inputs"]["voice"]["object_path"], "source_language": "en",
            "target_languages": ["es"]})
        assert again.status_code == 422 and again.json()["error"]["code"] == "object_not_found"

        # When the second job from the shared upload has expired too, the object goes.
        await finish_job(svc.pool, second["id"], 49)
        later = await retention.run(svc.pool, storage, settings)
        assert (later.input_jobs, later.inputs) == (1, 1)
        assert await storage.stat(shared_voice) is None
        assert (await retention.run(svc.pool, storage, settings)).input_jobs == 0


async def test_uploads_no_job_used_go_after_upload_ttl(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        storage = svc.services.storage
        stale = await svc.upload("tom", wav_bytes())
        fresh = await svc.upload("tom", wav_bytes())
        used_job = (await svc.create_job("tom", ["es"])).json()
        used = used_job["inputs"]["voice"]["object_path"]
        # Asked for a URL and never uploaded: the row goes all the same.
        never = (await svc.client.post("/v1/uploads", headers=svc.auth("tom"), json={"files": [
            {"kind": "voice", "filename": "v.wav", "content_type": "audio/wav", "size_bytes": 1000}]})).json()
        never_path = never["uploads"][0]["object_path"]
        await svc.pool.execute(
            """UPDATE uploads SET created_at = now() - interval '25 hours', url_expires_at = now() - interval '23 hours'
               WHERE object_path = ANY($1::text[])""", [stale, used, never_path])

        report = await retention.run(svc.pool, storage, settings)
        assert report.uploads == 2
        assert report.upload_bytes == len(wav_bytes()) + 1000
        assert await storage.stat(stale) is None
        assert await storage.stat(fresh) is not None and await storage.stat(used) is not None
        deleted = {r["object_path"]: r["deleted_at"] is not None for r in await svc.pool.fetch(
            "SELECT object_path, deleted_at FROM uploads")}
        assert deleted == {stale: True, never_path: True, fresh: False, used: False}
        late = await svc.client.post("/v1/jobs", headers=svc.auth("tom"), json={
            "voice_object": stale, "source_language": "en", "target_languages": ["es"]})
        assert late.status_code == 422 and late.json()["error"]["code"] == "object_not_found"


async def test_scratch_of_jobs_that_are_over_goes_and_of_running_ones_stays(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        cancelled = (await svc.create_job("una", ["es"])).json()
        running = (await svc.create_job("una", ["es"])).json()
        for job in (cancelled, running):
            folder = settings.scratch_dir / job["id"] / "es"
            folder.mkdir(parents=True)
            (folder / "clip.wav").write_bytes(b"x" * 1000)
        (settings.scratch_dir / "downloads").mkdir()  # not a job's: never touched
        assert (await svc.client.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=svc.auth("una"))).status_code == 200

        report = await retention.run(svc.pool, svc.services.storage, settings)
        assert (report.scratch_dirs, report.scratch_bytes) == (1, 1000)
        assert not (settings.scratch_dir / cancelled["id"]).exists()
        assert (settings.scratch_dir / running["id"] / "es" / "clip.wav").exists()
        assert (settings.scratch_dir / "downloads").exists()


async def test_two_runs_at_once_share_the_work_and_do_nothing_twice(settings: Settings, tmp_path: Path) -> None:
    count = 1100  # more than two batches of retention.BATCH
    async with running_service(settings, run_supervisor=False) as svc:
        storage = svc.services.storage
        job = (await svc.create_job("vic", ["es"])).json()
        source = tmp_path / "a.bin"
        source.write_bytes(b"z" * 10)
        paths = [f"vic/jobs/{job['id']}/es/{i}.bin" for i in range(count)]
        for path in paths:
            await storage.write_file(path, str(source), "application/octet-stream")
        await svc.pool.executemany(  # one row per (job, language, kind): a language label of its own each
            """INSERT INTO artifacts (job_id, task_id, target_language, kind, object_path, sha256, size_bytes,
                                      content_type, created_at, expires_at)
               SELECT $1::uuid, t.id, $3, 'master_wav', $2, repeat('0', 64), 10, 'audio/wav',
                      now() - interval '3 days', now() - interval '1 day'
               FROM language_tasks t WHERE t.job_id = $1::uuid""",
            [(job["id"], path, f"x{i}") for i, path in enumerate(paths)])

        first, second = await asyncio.gather(retention.run(svc.pool, storage, settings),
                                             retention.run(svc.pool, storage, settings))
        assert first.artifacts + second.artifacts == count
        assert first.artifact_bytes + second.artifact_bytes == 10 * count
        assert await svc.pool.fetchval("SELECT count(*) FROM artifacts WHERE deleted_at IS NULL") == 0
        assert not any((settings.storage_dir / "dubbing" / p).exists() for p in paths)


def run_cli(settings: Settings, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": settings.database_url or "", "DATA_DIR": str(settings.data_dir),
           "SUPABASE_JWT_SECRET": JWT_SECRET}
    done = subprocess.run([dubbing_command(), "retention", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_dry_run_through_the_cli_counts_and_deletes_nothing(settings: Settings, tmp_path: Path) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        storage = svc.services.storage
        job = (await svc.create_job("wes", ["es"])).json()
        source = tmp_path / "file.srt"
        source.write_bytes(b"1" * 2048)
        old_path = await add_artifact(svc, job["id"], "wes", "b.vtt", True, source)
        await finish_job(svc.pool, job["id"], 50)
        stale = await svc.upload("wes", wav_bytes())
        await svc.pool.execute("UPDATE uploads SET created_at = now() - interval '2 days', "
                               "url_expires_at = now() - interval '1 day' WHERE object_path = $1", stale)
        voice = job["inputs"]["voice"]

        printed = await asyncio.to_thread(run_cli, settings, "--dry-run")
        assert "nothing deleted" in printed
        assert re.search(r"expired artifacts: 1 \(2\.0 KiB\)", printed), printed
        assert f"inputs of finished or deleted jobs: 1 objects of 1 jobs ({voice['size_bytes'] / 1024:.1f} KiB)" \
            in printed, printed
        assert re.search(r"unused uploads: 1 \(", printed), printed
        assert await storage.stat(old_path) is not None and await storage.stat(voice["object_path"]) is not None
        assert await storage.stat(stale) is not None
        assert await svc.pool.fetchval("SELECT count(*) FROM retention_runs") == 0

        printed = await asyncio.to_thread(run_cli, settings)
        assert printed.startswith("deleted:") and "expired artifacts: 1 (" in printed
        assert await storage.stat(old_path) is None and await storage.stat(voice["object_path"]) is None
        assert await storage.stat(stale) is None
        run = await svc.pool.fetchrow("SELECT * FROM ops.retention_runs")
        assert run["trigger"] == "command" and run["error"] is None
        assert run["report"]["artifacts"] == 1 and run["report"]["inputs"] == 1 and run["report"]["uploads"] == 1


async def make_expired_artifact(settings: Settings, database_url: str, tmp_path: Path) -> str:
    """A job (straight into the tables, as the supervisor tests make them) with an artifact past its expiry."""
    pool = await connection.create_pool(database_url, max_size=2)
    try:
        voice = InputObject("ann/uploads/x/voice.wav", "audio/wav", 100, "0" * 64, 1.0)
        job_id, _ = await jobs.create(pool, NewJob("ann", "en", ["es"], voice, None, None, uuid.uuid4().hex))
        source = tmp_path / "old.srt"
        source.write_text("old")
        storage = LocalStorage(settings.storage_dir, settings.storage_bucket, "http://x", settings.jwt_secret)
        path = f"ann/jobs/{job_id}/source/old.srt"
        await storage.write_file(path, str(source), "application/x-subrip")
        await pool.execute(
            """INSERT INTO artifacts (job_id, kind, object_path, sha256, size_bytes, content_type, created_at,
                                      expires_at)
               VALUES ($1, 'transcript_srt', $2, repeat('0', 64), 3, 'application/x-subrip',
                       now() - interval '3 days', now() - interval '1 day')""", job_id, path)
        return path
    finally:
        await pool.close()


async def test_the_service_runs_retention_on_schedule_and_one_process_wins(
        settings: Settings, database_url: str, tmp_path: Path) -> None:
    path = await make_expired_artifact(settings, database_url, tmp_path)
    scheduled = settings.with_overrides(retention_interval_minutes=60)
    async with running_service(scheduled, run_supervisor=False) as one, \
            running_service(scheduled, run_supervisor=False) as two:
        schedules: list[Any] = [one.services.retention, two.services.retention]
        for schedule in schedules:  # each process looks once at start-up
            await asyncio.wait_for(schedule.checked.wait(), 60)
        assert sum(s.runs for s in schedules) == 1
        runs = await one.pool.fetch("SELECT * FROM ops.retention_runs")
        assert [(r["trigger"], r["error"]) for r in runs] == [("schedule", None)]
        assert runs[0]["report"]["artifacts"] == 1 and runs[0]["finished_at"] is not None
        assert await one.services.storage.stat(path) is None
        # Looking again within the interval runs nothing: a run started less than an hour ago.
        assert await schedules[1].check() is None and await schedules[0].check() is None
        assert await one.pool.fetchval("SELECT count(*) FROM retention_runs") == 1
