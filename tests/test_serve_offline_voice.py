"""The offline voice a job asks for, through the real `dubbing serve`: "natural" is spoken by Kokoro-82M with
the language's style, "fast" by espeak-ng, each job completes, its manifest names the engine and voice, and
the dubbed voice stays under the true-peak ceiling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.audio.loudness import measure_loudness
from service.sample import make_sample
from tests.support import ServedProcess, kokoro_dir, read_events, served


async def _dub(svc: ServedProcess, voice: str, offline_voice: str) -> dict[str, Any]:
    created = await svc.client.post("/v1/jobs", headers=svc.auth("ona"), json={
        "voice_object": voice, "source_language": "en", "target_languages": ["es"], "offline_voice": offline_voice})
    assert created.status_code == 201, created.text
    assert created.json()["offline_voice"] == offline_voice
    job_id = created.json()["id"]
    async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("ona"), timeout=240) as stream:
        history = await read_events(stream)
    assert history[-1].event == "done", svc.logs()[-3000:]
    listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth("ona"))).json()
    return {a["kind"]: a for a in listed["artifacts"]}


async def test_a_job_is_dubbed_with_the_natural_or_the_fast_offline_voice(tmp_path: Path,
                                                                         database_url: str) -> None:
    sample = make_sample(tmp_path / "sample")
    async with served(tmp_path / "data", database_url, OFFLINE_VOICE="auto", KOKORO_MODEL_DIR=kokoro_dir()) as svc:
        voice = await svc.upload("ona", sample.voice, "voice")
        for asked, engine, style in (("natural", "kokoro", "jm_kumo"), ("fast", "espeak-ng", "es")):
            artifacts = await _dub(svc, voice, asked)
            manifest = (await svc.client.get(artifacts["manifest"]["download_url"])).json()
            assert manifest["engines"]["tts"] == {"engine": engine, "voice": style}
            stem = tmp_path / f"{asked}.wav"
            stem.write_bytes((await svc.client.get(artifacts["voice_stem"]["download_url"])).content)
            peak = measure_loudness(str(stem)).true_peak_dbtp
            assert peak is not None and peak <= -1.0
