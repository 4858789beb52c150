"""`dubbing serve` dubbing Italian speech into English offline: the language detected (`auto`), the transcript
by the multilingual Whisper base, and the translation through Spanish (Apertium has no Italian-English pair)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import soundfile

from tests.support import read_events, served, whisper_base_dir

ITALIAN = ("Buongiorno a tutti. Oggi parliamo della storia della città e dei suoi abitanti, che sono arrivati molti "
           "secoli fa dal nord. Il gatto dorme sul tavolo della cucina.")


async def test_italian_is_detected_and_dubbed_into_english_through_spanish(tmp_path: Path, database_url: str) -> None:
    voice_path = tmp_path / "italian.wav"
    subprocess.run(["espeak-ng", "-v", "it", "-w", str(voice_path), ITALIAN], check=True)
    async with served(tmp_path / "data", database_url, WHISPER_MULTILINGUAL_MODEL_DIR=whisper_base_dir()) as svc:
        voice = await svc.upload("ivo", voice_path, "voice")
        created = await svc.client.post("/v1/jobs", headers=svc.auth("ivo"), json={
            "voice_object": voice, "target_languages": ["en"]})  # source_language: "auto" by default
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("ivo"),
                                     timeout=240) as stream:
            history = await read_events(stream)
        assert history[-1].event == "done", svc.logs()[-3000:]
        job = (await svc.client.get(f"/v1/jobs/{job_id}", headers=svc.auth("ivo"))).json()
        assert job["status"] == "complete", (job["tasks"], svc.logs()[-3000:])
        assert job["source_language"] == "auto" and job["detected_language"]["code"] == "it"

        listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth("ivo"))).json()
        by_kind = {a["kind"]: a for a in listed["artifacts"] if a["target_language"] == "en"}
        manifest = json.loads((await svc.client.get(by_kind["manifest"]["download_url"])).content)
        assert manifest["source_language"] == "it" and manifest["target_language"] == "en"
        assert manifest["pivot"] == "es"
        assert manifest["detection"]["requested"] == "auto" and manifest["detection"]["detected"] == "it"
        assert manifest["engines"]["stt"]["model"] == "base"
        assert manifest["segments"] and all(s["target_text"].strip() for s in manifest["segments"])
        master = tmp_path / "master.wav"
        master.write_bytes((await svc.client.get(by_kind["master_wav"]["download_url"])).content)
        assert abs(soundfile.info(master).duration - soundfile.info(voice_path).duration) <= 0.05
