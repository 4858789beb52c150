"""A whole job through the HTTP API on real PostgreSQL and the real offline engines."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from service.audio.fitting import interval_iou
from service.sample import make_sample
from service.settings import Settings
from service.stages.captions import parse_srt, parse_vtt
from tests.support import Service, read_events, running_service


def speech_intervals(path: Path, threshold_db: float = -40.0) -> list[tuple[float, float]]:
    """Where a clean recording is louder than `threshold_db` (20 ms frames, gaps under 0.3 s bridged)."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    hop = rate // 50
    frames = len(mono) // hop
    levels = 10 * np.log10(np.mean(mono[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    intervals: list[tuple[float, float]] = []
    for index in np.flatnonzero(levels > threshold_db):
        start, end = index * hop / rate, (index + 1) * hop / rate
        if intervals and start - intervals[-1][1] < 0.3:
            intervals[-1] = (intervals[-1][0], end)
        else:
            intervals.append((start, end))
    return intervals


def measure(path: Path) -> tuple[float, float]:
    """Integrated loudness and true peak, measured here with ffmpeg's ebur128, not the service's code."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]
    lufs = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1))  # type: ignore[union-attr]
    return lufs, peak


async def upload_file(svc: Service, user: str, path: Path, kind: str) -> str:
    return await svc.upload(user, path.read_bytes(), kind=kind, filename=path.name)


async def run_job(svc: Service, user: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    response = await svc.client.post("/v1/jobs", headers=svc.auth(user), json=body)
    assert response.status_code == 201, response.text
    job = response.json()
    async with svc.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=svc.auth(user),
                                 timeout=240) as stream:
        history = await read_events(stream)
    final = (await svc.client.get(f"/v1/jobs/{job['id']}", headers=svc.auth(user))).json()
    return final, history


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_sample(tmp_path_factory.mktemp("sample"))


async def test_english_to_spanish_and_catalan_with_background(backend_settings: Settings, sample: Any,
                                                              tmp_path: Path) -> None:
    settings = backend_settings  # once per QUEUE_BACKEND
    async with running_service(settings.with_overrides(cpu_workers=2, max_concurrent_tasks=2),
                               pipeline=True) as svc:
        voice = await upload_file(svc, "ana", sample.voice, "voice")
        background = await upload_file(svc, "ana", sample.background, "background")
        job, history = await run_job(svc, "ana", {"voice_object": voice, "background_object": background,
                                                  "source_language": "en", "target_languages": ["es", "ca"]})
        assert job["status"] == "complete", json.dumps(job["tasks"], indent=1)
        assert history[-1].event == "done"
        progress_events = [e for e in history if e.event == "progress" and e.data["target_language"] == "es"]
        assert len(progress_events) >= 5, "progress moves within stages"

        listed = (await svc.client.get(f"/v1/jobs/{job['id']}/artifacts", headers=svc.auth("ana"))).json()
        by_key = {(a["target_language"], a["kind"]): a for a in listed["artifacts"]}
        expected = {"master_wav", "master_web", "voice_stem", "captions_srt", "captions_vtt", "manifest"}
        for language in ("es", "ca"):
            assert {k for (lang, k) in by_key if lang == language} == expected
        assert {k for (lang, k) in by_key if lang is None} == {"transcript_json", "transcript_srt", "transcript_vtt"}

        files: dict[tuple[str | None, str], bytes] = {}
        for key, artifact in by_key.items():
            response = await svc.client.get(artifact["download_url"])
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
            assert len(response.content) == artifact["size_bytes"]
            files[key] = response.content

        transcript = json.loads(files[(None, "transcript_json")])
        assert transcript["segments"] and all(s["text"].strip() for s in transcript["segments"])
        # The transcript covers where the sample speaks (however the recogniser cuts it into segments).
        heard = [(s["start"], s["end"]) for s in transcript["segments"]]
        assert interval_iou(heard, sample.speech) >= 0.6, (heard, sample.speech)

        background_seconds = soundfile.info(sample.background).duration
        for language in ("es", "ca"):
            master = tmp_path / f"master_{language}.wav"
            master.write_bytes(files[(language, "master_wav")])
            info = soundfile.info(master)
            assert abs(info.duration - background_seconds) <= 0.05
            assert info.samplerate == 48000 and info.channels == 2
            lufs, peak = measure(master)
            assert abs(lufs - (-16.0)) <= 1.0, lufs
            assert peak <= -1.0, peak

            manifest = json.loads(files[(language, "manifest")])
            assert manifest["target_language"] == language
            assert manifest["engines"]["tts"]["engine"] == "espeak-ng"
            assert len(manifest["segments"]) == len(transcript["units"])
            # The dubbed voice speaks where the original does: checked here from the stem itself, against
            # where the sample placed its lines, and the manifest's measured figure agrees.
            stem = tmp_path / f"stem_{language}.wav"
            stem.write_bytes(files[(language, "voice_stem")])
            heard_dub = speech_intervals(stem)
            assert interval_iou(heard_dub, sample.speech) >= 0.8, (heard_dub, sample.speech)
            assert manifest["sync"]["speech_iou"] >= 0.8, manifest["sync"]
            assert manifest["sync"]["within_10_percent"] >= 0.75, manifest["sync"]
            assert manifest["sync"]["onset_offset_p95_ms"] <= 150, manifest["sync"]
            for segment in manifest["segments"]:
                assert segment["target_text"] and segment["source_text"]
                assert segment["placed_start"] == pytest.approx(segment["source_start"], abs=1e-3)
                assert 1 / 1.25 - 1e-6 <= segment["stretch"] <= 1.25 + 1e-6
                assert 0.85 - 1e-3 <= segment["rate"] * segment["stretch"] <= 1.25 * 1.25 + 1e-3
            starts = sorted(s["source_start"] for s in manifest["segments"])
            for segment in manifest["segments"]:
                later = [s for s in starts if s > segment["source_start"]]
                if later:
                    assert segment["placed_end"] <= later[0] + 1e-6, "never over the next segment"
            names = {a["kind"] for a in manifest["artifacts"]}
            assert expected - {"manifest"} <= names
            assert manifest["loudness"]["integrated_lufs"] == pytest.approx(lufs, abs=0.5)

            for kind, parse in (("captions_srt", parse_srt), ("captions_vtt", parse_vtt)):
                cues = parse(files[(language, kind)].decode())
                assert cues
                for cue in cues:
                    lines = cue.text.split("\n")
                    assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
                    assert 5 / 6 - 1e-3 <= cue.end - cue.start <= 7.0 + 1e-3
                    assert len(cue.text.replace("\n", " ")) / (cue.end - cue.start) <= 17.0 + 0.05
                assert all(a.end <= b.start + 1e-3 for a, b in itertools.pairwise(cues))

        web = files[("es", "master_web")]
        decoded, _ = soundfile.read(io.BytesIO(files[("es", "voice_stem")]))
        assert np.abs(decoded).max() > 0.01
        assert web[:3] == b"ID3" or web[0] == 0xFF


async def test_silence_completes_with_an_empty_transcript(settings: Settings, tmp_path: Path) -> None:
    silent = tmp_path / "silence.wav"
    soundfile.write(silent, np.zeros(48000 * 3, dtype=np.float32), 48000)
    async with running_service(settings, pipeline=True) as svc:
        voice = await upload_file(svc, "sam", silent, "voice")
        job, _ = await run_job(svc, "sam", {"voice_object": voice, "source_language": "en",
                                            "target_languages": ["es"]})
        assert job["status"] == "complete", job["tasks"]
        listed = (await svc.client.get(f"/v1/jobs/{job['id']}/artifacts", headers=svc.auth("sam"))).json()
        manifest_url = next(a["download_url"] for a in listed["artifacts"] if a["kind"] == "manifest")
        manifest = (await svc.client.get(manifest_url)).json()
        assert manifest["segments"] == []
        assert "no speech" in manifest["note"].lower()


async def test_languages_the_engines_cannot_do_are_refused_up_front(settings: Settings) -> None:
    async with running_service(settings, pipeline=True, run_supervisor=False) as svc:
        for body in ({"source_language": "en", "target_languages": ["ja"]},
                     {"source_language": "de", "target_languages": ["en"]}):
            response = await svc.create_job("zoe", **{"targets": body["target_languages"],
                                                        "source": body["source_language"]})
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "unsupported_language"
        assert (await svc.count_rows())["jobs"] == 0


async def test_an_engine_crash_fails_one_language_and_the_others_go_on(settings: Settings, sample: Any,
                                                                       tmp_path: Path) -> None:
    from service.engines.offline.apertium import ApertiumTranslator
    from service.engines.offline.espeak import EspeakSynthesizer
    from service.engines.offline.whisper import WhisperTranscriber
    from service.engines.protocols import Engines

    # A real Apertium install whose English→Catalan pipeline is broken (a data file is missing).
    modes = tmp_path / "apertium" / "modes"
    modes.mkdir(parents=True)
    (modes / "eng-spa.mode").write_text(Path("/usr/share/apertium/modes/eng-spa.mode").read_text())
    (modes / "eng-cat.mode").write_text("lt-proc -w '/nonexistent/eng-cat.automorf.bin'\n")

    def broken_catalan(executor: Any) -> Engines:
        return Engines(WhisperTranscriber(executor), ApertiumTranslator(str(tmp_path / "apertium")),
                       EspeakSynthesizer())

    async with running_service(settings, pipeline=True, engines=broken_catalan) as svc:
        voice = await upload_file(svc, "kim", sample.voice, "voice")
        job, history = await run_job(svc, "kim", {"voice_object": voice, "source_language": "en",
                                                  "target_languages": ["es", "ca"]})
        tasks = {t["target_language"]: t for t in job["tasks"]}
        assert job["status"] == "partial"
        assert tasks["es"]["stage"] == "complete"
        assert tasks["ca"]["stage"] == "failed"
        assert tasks["ca"]["error"]["code"] == "engine_failed"
        assert tasks["ca"]["error"]["message"]
        failed = [e for e in history if e.event == "failed"]
        assert [e.data["target_language"] for e in failed] == ["ca"]
        stored = await svc.services.storage.stat(voice)
        assert stored is not None and stored.size_bytes == sample.voice.stat().st_size
        async with svc.services.storage.local_copy(voice) as path:
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == job["inputs"]["voice"]["sha256"]


async def test_speech_is_transcribed_once_per_job(backend_settings: Settings, sample: Any) -> None:
    """Two languages claimed by one process: the recogniser runs once and both tasks reuse it (either backend)."""
    settings = backend_settings
    from service.engines.offline.apertium import ApertiumTranslator
    from service.engines.offline.espeak import EspeakSynthesizer
    from service.engines.offline.whisper import WhisperTranscriber
    from service.engines.protocols import Engines

    calls: list[str] = []

    class CountingWhisper(WhisperTranscriber):
        async def transcribe(self, audio_path: str | None, language: str | None, **kwargs: Any) -> Any:
            calls.append(str(audio_path))
            return await super().transcribe(audio_path, language, **kwargs)

    def engines(executor: Any) -> Engines:
        return Engines(CountingWhisper(executor), ApertiumTranslator(), EspeakSynthesizer())

    async with running_service(settings.with_overrides(max_concurrent_tasks=3), pipeline=True,
                               engines=engines) as svc:
        voice = await upload_file(svc, "ida", sample.voice, "voice")
        job, _ = await run_job(svc, "ida", {"voice_object": voice, "source_language": "en",
                                            "target_languages": ["es", "ca"]})
        assert job["status"] == "complete", job["tasks"]
        assert len(calls) == 1, calls
