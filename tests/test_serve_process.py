"""`dubbing serve` as the README starts it, in its own process on its default event loop (uvloop),
dubbing a file offline through HTTP as a browser would: signed uploads, the job, the progress stream;
once per QUEUE_BACKEND."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import soundfile

from service.sample import make_sample
from service.settings import Settings
from tests.support import read_events, served
from tests.support.redis import backend_env


async def test_served_process_dubs_a_file_offline(tmp_path: Path, database_url: str,
                                                  backend_settings: Settings) -> None:
    assert importlib.util.find_spec("uvloop") is not None, "uvicorn[standard] brings uvloop: serve runs on it"
    sample = make_sample(tmp_path / "sample")
    async with served(tmp_path / "data", database_url, **backend_env(backend_settings)) as svc:
        voice = await svc.upload("uma", sample.voice, "voice")
        background = await svc.upload("uma", sample.background, "background")
        created = await svc.client.post("/v1/jobs", headers=svc.auth("uma"), json={
            "voice_object": voice, "background_object": background, "source_language": "en",
            "target_languages": ["es", "ca"]})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("uma"),
                                     timeout=240) as stream:
            history = await read_events(stream)
        assert history[-1].event == "done", svc.logs()[-3000:]
        job = (await svc.client.get(f"/v1/jobs/{job_id}", headers=svc.auth("uma"))).json()
        assert job["status"] == "complete", (job["tasks"], svc.logs()[-3000:])
        listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth("uma"))).json()
        masters = [a for a in listed["artifacts"] if a["kind"] == "master_wav"]
        assert sorted(a["target_language"] for a in masters) == ["ca", "es"]
        for artifact in masters:
            body = (await svc.client.get(artifact["download_url"])).content
            assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
            path = tmp_path / f"{artifact['target_language']}.wav"
            path.write_bytes(body)
            assert abs(soundfile.info(path).duration - soundfile.info(sample.background).duration) <= 0.05
