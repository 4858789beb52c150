"""`dubbing serve` dubbing a real two-person dialogue offline, as a user would check it from the downloads: two
speakers found, each line marked with its speaker in the transcript, the manifest and the captions, and each
speaker dubbed with a voice of their own, heard apart (median pitch at least 15 % apart) and the same throughout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.audio import speakers
from service.audio.ffmpeg import read_samples
from tests.support import dialogue, read_events, served

pytestmark = pytest.mark.skipif(not dialogue.available("en"), reason="apt-get install asterisk-core-sounds-en-g722")


def median_pitch(path: Path, spans: list[tuple[float, float]]) -> float:
    audio = np.frombuffer(read_samples(str(path), rate=16000), dtype=np.float32)
    f0 = np.concatenate([speakers.steady_pitch(speakers.pitch(audio[int(s * 16000): int(e * 16000)]))
                         for s, e in spans])
    return float(np.median(f0))


async def test_a_dialogue_is_dubbed_with_a_voice_per_speaker(tmp_path: Path, database_url: str) -> None:
    talk = dialogue.make(tmp_path / "dialogue.wav", ("en", "librivox"), 60.0, per_turn=1, rate=48000)
    async with served(tmp_path / "data", database_url) as svc:
        voice = await svc.upload("ada", talk.path, "voice")
        for bad in ({"num_speakers": 9}, {"voices": {"S9": "m3"}}, {"num_speakers": 2, "voices": {"S3": "m3"}},
                    {"voice_cloning": "yes"}):
            refused = await svc.client.post("/v1/jobs", headers=svc.auth("ada"), json={
                "voice_object": voice, "source_language": "en", "target_languages": ["es"], **bad})
            assert refused.status_code == 422 and refused.json()["error"]["code"], (bad, refused.text)
        assert (await svc.client.get("/v1/jobs", headers=svc.auth("ada"))).json()["jobs"] == []
        created = await svc.client.post("/v1/jobs", headers=svc.auth("ada"), json={
            "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert created.json()["speakers"] == {"num_speakers": 0, "voice_cloning": False, "voices": {}}
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("ada"),
                                     timeout=300) as stream:
            history = await read_events(stream)
        assert history[-1].event == "done", svc.logs()[-3000:]
        listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth("ada"))).json()
        files = {f"{a['target_language']}/{a['kind']}": (await svc.client.get(a["download_url"])).content
                 for a in listed["artifacts"]}

    transcript = json.loads(files["None/transcript_json"])
    assert [s["id"] for s in transcript["speakers"]] == ["S1", "S2"]
    assert {u["speaker"] for u in transcript["units"]} == {"S1", "S2"}
    assert all(s["speaker"] in ("S1", "S2") for s in transcript["segments"])
    manifest = json.loads(files["es/manifest"])
    voices = {s["id"]: s["voice"] for s in manifest["speakers"]}
    assert set(voices) == {"S1", "S2"} and voices["S1"] != voices["S2"]
    assert all(s["engine"] == "espeak-ng" and not s["cloned"] and s["speech_seconds"] > 5
               for s in manifest["speakers"])
    by_speaker: dict[str, list[tuple[float, float]]] = {"S1": [], "S2": []}
    for segment in manifest["segments"]:
        by_speaker[segment["speaker"]].append((segment["placed_start"], segment["placed_end"]))
    assert by_speaker["S1"] and by_speaker["S2"]
    vtt, srt = files["es/captions_vtt"].decode(), files["es/captions_srt"].decode()
    assert "<v S1>" in vtt and "<v S2>" in vtt and "\nS1: " in srt and "\nS2: " in srt
    # Heard apart, from the dubbed voice stem: each speaker's lines, their median pitch.
    stem = tmp_path / "stem.wav"
    stem.write_bytes(files["es/voice_stem"])
    low, high = sorted([median_pitch(stem, by_speaker["S1"]), median_pitch(stem, by_speaker["S2"])])
    assert high >= low * 1.15, (low, high)
