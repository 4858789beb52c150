"""A whole job through the HTTP API in cloud mode: Supabase Storage and Auth, Deepgram, OpenAI,
all answered by respx on their documented shapes; checked as the offline end-to-end test is."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import respx
import soundfile

from service.routes.auth import mint
from service.sample import SAMPLE_LINES, make_sample
from service.settings import Settings
from tests.fakes.cloud import PROJECT, SECRETS, FakeCloud, cloud_settings
from tests.support import read_events, running_service


def loudness(path: Path) -> tuple[float, float]:
    import re

    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]
    return (float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),  # type: ignore[union-attr]
            float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1)))  # type: ignore[union-attr]


async def test_cloud_mode_end_to_end(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = make_sample(tmp_path / "sample")
    lines = [(start, end, text) for (start, end), (_, text) in zip(sample.speech, SAMPLE_LINES, strict=True)]
    cloud = FakeCloud(lines)
    cloud_cfg = cloud_settings(settings)
    with respx.mock(assert_all_called=False) as router:
        cloud.install(router)
        async with running_service(cloud_cfg, pipeline=True) as svc:
            token = mint(SECRETS["jwt"], "cloud-user", issuer=f"{PROJECT}/auth/v1")
            headers = {"Authorization": f"Bearer {token}"}
            files = [("voice", sample.voice), ("background", sample.background)]
            response = await svc.client.post("/v1/uploads", headers=headers, json={"files": [
                {"kind": k, "filename": p.name, "content_type": "audio/wav", "size_bytes": p.stat().st_size}
                for k, p in files]})
            assert response.status_code == 201, response.text
            uploads = response.json()["uploads"]
            for (_, path), upload in zip(files, uploads, strict=True):
                assert upload["upload_url"].startswith(f"{PROJECT}/storage/v1/object/upload/sign/dubbing/cloud-user/")
                put = await svc.client.put(upload["upload_url"], content=path.read_bytes(),
                                           headers={"Content-Type": "audio/wav"})
                assert put.status_code == 200
            created = await svc.client.post("/v1/jobs", headers=headers, json={
                "voice_object": uploads[0]["object_path"], "background_object": uploads[1]["object_path"],
                "source_language": "en", "target_languages": ["es", "fr"]})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=120) as stream:
                history = await read_events(stream)
            assert history[-1].event == "done" and history[-1].data["status"] == "complete", history[-3:]
            job = (await svc.client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
            usages = {t["target_language"]: t["usage"] for t in job["tasks"]}
            usage = usages["es"]
            listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=headers)).json()["artifacts"]
            downloads: dict[str, bytes] = {}
            for artifact in listed:
                assert artifact["download_url"].startswith(f"{PROJECT}/storage/v1/object/sign/dubbing/")
                got = await svc.client.get(artifact["download_url"])
                assert hashlib.sha256(got.content).hexdigest() == artifact["sha256"]
                downloads[f"{artifact['target_language']}/{artifact['kind']}"] = got.content

    # Speech-to-text ran once for the two languages, billed once, and Deepgram fetched the voice
    # itself through a signed URL: the worker never downloaded it for STT.
    assert len(cloud.listen_bodies) == 1 and set(cloud.listen_bodies[0]) == {"url"}
    billed = [lang for lang, u in usages.items() if u.get("stt_audio_seconds", 0) > 0]
    assert len(billed) == 1, usages
    assert "/storage/v1/object/sign/dubbing/cloud-user/" in cloud.listen_bodies[0]["url"]
    assert cloud.speak_texts and all(t.startswith(("es ", "fr ")) for t in cloud.speak_texts)
    kinds = {a["kind"] for a in listed if a["target_language"] in (None, "es")}
    assert kinds == {"master_wav", "master_web", "voice_stem", "captions_srt", "captions_vtt",
                                          "manifest", "transcript_json", "transcript_srt", "transcript_vtt"}
    manifest = json.loads(downloads["es/manifest"])
    assert manifest["engines"]["stt"]["engine"] == "deepgram"
    assert manifest["engines"]["translation"]["engine"] == "openai"
    assert manifest["engines"]["tts"]["engine"] == "deepgram-aura"
    assert manifest["sync"]["speech_iou"] >= 0.8, manifest["sync"]
    assert all(s["target_text"].startswith("es ") for s in manifest["segments"])
    for key in ("tts_characters", "openai_prompt_tokens", "openai_completion_tokens"):
        assert usage.get(key, 0) > 0 and manifest["usage"].get(key, 0) > 0, key
    assert usages[billed[0]]["stt_audio_seconds"] == pytest.approx(soundfile.info(sample.voice).duration, abs=0.5)
    master = tmp_path / "master.wav"
    master.write_bytes(downloads["es/master_wav"])
    assert abs(soundfile.info(master).duration - soundfile.info(sample.background).duration) <= 0.05
    lufs, peak = loudness(master)
    assert abs(lufs + 16) <= 1 and peak <= -1

    captured = capsys.readouterr()
    logs = captured.out + captured.err
    assert "provider.request" in logs and "openai" in logs  # the provider calls were logged...
    everything = json.dumps(manifest) + logs + json.dumps(job)
    for secret in SECRETS.values():  # ...and no secret appears anywhere

        assert secret not in everything


