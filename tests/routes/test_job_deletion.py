"""`DELETE /v1/jobs/{id}`: running languages are cancelled first, then every file of the job goes at once; the job
is gone for its owner, its row stays (marked) for operators, and nobody else can delete it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from service.db import artifacts
from service.db.artifacts import NewArtifact
from service.settings import Settings
from service.stages.context import StageContext
from tests.support import Service, read_events, running_service, wav_bytes


async def add_artifact(svc: Service, job_id: str, path: str, source: Path) -> None:
    await svc.services.storage.write_file(path, str(source), "application/json")
    await artifacts.record(svc.pool, NewArtifact(uuid.UUID(job_id), None, None, "transcript_json", path, "0" * 64,
                                                 source.stat().st_size, "application/json"), timedelta(hours=48))


async def test_delete_removes_every_file_and_the_job_is_gone_for_its_owner(settings: Settings, tmp_path: Path) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        storage = svc.services.storage
        voice = await svc.upload("ada", wav_bytes(1.2))
        background = await svc.upload("ada", wav_bytes(1.2, freq=220), kind="background", filename="bed.wav")
        job = (await svc.client.post("/v1/jobs", headers=svc.auth("ada"), json={
            "voice_object": voice, "background_object": background, "source_language": "en",
            "target_languages": ["es", "fr"], "idempotency_key": "once"})).json()
        source = tmp_path / "t.json"
        source.write_text("{}")
        artifact_path = f"ada/jobs/{job['id']}/source/transcript.json"
        await add_artifact(svc, job["id"], artifact_path, source)
        work = settings.scratch_dir / job["id"] / "es"
        work.mkdir(parents=True)
        (work / "clip.wav").write_bytes(b"x")

        stranger = await svc.client.delete(f"/v1/jobs/{job['id']}", headers=svc.auth("mallory"))
        assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "not_found"
        assert await storage.stat(voice) is not None

        response = await svc.client.delete(f"/v1/jobs/{job['id']}", headers=svc.auth("ada"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == job["id"] and body["deleted_at"]
        assert (body["cancelled_tasks"], body["artifacts_deleted"], body["inputs_deleted"]) == (2, 1, 2)
        assert body["files_pending"] is False
        for path in (voice, background, artifact_path):
            assert await storage.stat(path) is None, path
        assert not (settings.scratch_dir / job["id"]).exists()

        for method, path in (("GET", f"/v1/jobs/{job['id']}"), ("GET", f"/v1/jobs/{job['id']}/artifacts"),
                             ("GET", f"/v1/jobs/{job['id']}/inputs"), ("DELETE", f"/v1/jobs/{job['id']}"),
                             ("POST", f"/v1/jobs/{job['id']}/cancel")):
            assert (await svc.client.request(method, path, headers=svc.auth("ada"))).status_code == 404, path
        assert (await svc.client.get("/v1/jobs", headers=svc.auth("ada"))).json()["jobs"] == []

        # For operators the row and its history stay, marked.
        row = await svc.pool.fetchrow("SELECT status, deleted_at, inputs_deleted_at, idempotency_key FROM jobs")
        assert row["status"] == "cancelled" and row["deleted_at"] and row["inputs_deleted_at"]
        assert row["idempotency_key"] is None  # the key is free for a new job
        assert await svc.pool.fetchval("SELECT count(*) FROM artifacts WHERE deleted_at IS NULL") == 0
        assert await svc.pool.fetchval("SELECT count(*) FROM uploads WHERE deleted_at IS NULL") == 0
        kinds = [r["kind"] for r in await svc.pool.fetch("SELECT kind FROM task_events ORDER BY seq")]
        assert kinds[-1] == "done" and kinds.count("stage") == 4  # queued and cancelled, per language
        storage_row = await svc.pool.fetchrow("SELECT * FROM ops.storage_by_user WHERE owner_id = 'ada'")
        assert storage_row["live_bytes"] == 0 and storage_row["deleted_bytes"] > 0
        documented = (await svc.client.get("/openapi.json")).json()
        answer = documented["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobDeletion"}
        assert set(documented["components"]["schemas"]["JobDeletion"]["properties"]) == set(body)


async def test_a_running_language_is_cancelled_before_the_files_go(settings: Settings) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def stt_forever(ctx: StageContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    async with running_service(settings, registry={"stt": stt_forever}) as svc:
        job = (await svc.create_job("bea", ["es"])).json()
        await asyncio.wait_for(started.wait(), 30)
        async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth("bea")) as stream:
            deleted = await svc.client.delete(f"/v1/jobs/{job['id']}", headers=svc.auth("bea"))
            history = await read_events(stream)
        assert deleted.status_code == 200 and deleted.json()["cancelled_tasks"] == 1
        # The open stream saw the cancellation, as for POST .../cancel.
        assert [(e.event, e.data.get("stage")) for e in history[-2:]] == [("stage", "cancelled"), ("done", None)]
        await asyncio.wait_for(stopped.wait(), 30)  # the runner let go within a heartbeat
        assert await svc.services.storage.stat(job["inputs"]["voice"]["object_path"]) is None


async def test_an_upload_another_job_still_uses_stays(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        voice = await svc.upload("cid", wav_bytes())
        body = {"voice_object": voice, "source_language": "en", "target_languages": ["es"]}
        first = (await svc.client.post("/v1/jobs", headers=svc.auth("cid"), json=body)).json()
        second = (await svc.client.post("/v1/jobs", headers=svc.auth("cid"),
                                        json={**body, "target_languages": ["fr"]})).json()
        response = await svc.client.delete(f"/v1/jobs/{first['id']}", headers=svc.auth("cid"))
        assert response.status_code == 200 and response.json()["inputs_deleted"] == 0
        assert await svc.services.storage.stat(voice) is not None
        kept = (await svc.client.get(f"/v1/jobs/{second['id']}", headers=svc.auth("cid"))).json()
        assert kept["inputs"]["voice"]["deleted_at"] is None
        assert (await svc.client.delete(f"/v1/jobs/{second['id']}", headers=svc.auth("cid"))).json()[
            "inputs_deleted"] == 1
        assert await svc.services.storage.stat(voice) is None
