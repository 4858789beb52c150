"""Media jobs through the real `dubbing serve`: generated videos (test pattern, LibriVox speech, a music-like bed
under it) in MP4, MOV, WebM and MKV, and one mixed soundtrack without a picture, dubbed into Spanish; everything
checked on the downloaded files: the picture untouched, the tracks and their languages, the captions, the window,
the dropped background, and the job's stems."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.support import read_events, served
from tests.support.media import RATE, audio_track, probe_streams, rms, soundtrack, stream_seconds, write_media
from tests.support.speech import available

pytestmark = pytest.mark.skipif(not available(), reason="needs pocketsphinx-testdata (LibriVox speech)")

SUBTITLE_CODEC = {"mp4": "mov_text", "mov": "mov_text", "webm": "webvtt", "mkv": "webvtt"}
DEMUXER = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska"}
# The dub in the codec players expect in the container; the original copied as uploaded (tests/support/media.py).
AUDIO_CODECS = {"mp4": ["aac", "aac"], "mov": ["aac", "aac"], "webm": ["opus", "opus"], "mkv": ["opus", "flac"]}


async def _dub(svc: Any, path: Path, content_type: str, **options: Any) -> dict[str, Any]:
    media = await svc.upload("mia", path, "media", content_type)
    created = await svc.client.post("/v1/jobs", headers=svc.auth("mia"), json={
        "media_object": media, "source_language": "en", "target_languages": ["es"], **options})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["media"]["has_video"] == content_type.startswith("video/")
    async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("mia"), timeout=300) as stream:
        history = await read_events(stream)
    job = (await svc.client.get(f"/v1/jobs/{job_id}", headers=svc.auth("mia"))).json()
    assert history[-1].event == "done" and job["status"] == "complete", (job["tasks"], svc.logs()[-4000:])
    listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth("mia"))).json()["artifacts"]
    files: dict[str, Path] = {}
    for artifact in listed:
        body = (await svc.client.get(artifact["download_url"])).content
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
        local = path.parent / f"{path.name}-{artifact['kind']}{Path(artifact['object_path']).suffix}"
        local.write_bytes(body)
        files[artifact["kind"]] = local
    return {"job": job, "files": files, "artifacts": {a["kind"]: a for a in listed}}


def _check_video(source: Path, dubbed: Path, container: str) -> None:
    """The picture is the input's (same codec, frame count, length within a frame); the dub first and default
    in Spanish in the container's codec, the original second in English, copied; the captions as the container's
    subtitle codec."""
    before, after = probe_streams(source), probe_streams(dubbed)
    assert DEMUXER[container] in after["format"]["format_name"].split(",")
    video_in = next(s for s in before["streams"] if s["codec_type"] == "video")
    video_out = [s for s in after["streams"] if s["codec_type"] == "video"]
    assert len(video_out) == 1
    assert video_out[0]["codec_name"] == video_in["codec_name"]
    assert video_out[0]["nb_read_packets"] == video_in["nb_read_packets"]
    num, den = (int(x) for x in video_in["avg_frame_rate"].split("/"))
    assert abs(stream_seconds(video_out[0]) - stream_seconds(video_in)) <= den / num + 1e-6
    assert abs(float(after["format"]["duration"]) - float(before["format"]["duration"])) <= 0.05
    audio = [s for s in after["streams"] if s["codec_type"] == "audio"]
    assert [s["codec_name"] for s in audio] == AUDIO_CODECS[container]
    assert [s["tags"]["language"] for s in audio] == ["spa", "eng"]
    assert [s["disposition"]["default"] for s in audio] == [1, 0]
    subtitles = [s for s in after["streams"] if s["codec_type"] == "subtitle"]
    assert [s["codec_name"] for s in subtitles] == [SUBTITLE_CODEC[container]]


async def test_media_jobs_dubbed_by_the_served_process(tmp_path: Path, database_url: str) -> None:
    track = soundtrack(speech_over_bed_db=6.0)
    inputs: dict[str, tuple[Path, str]] = {}
    for container in ("mp4", "mov", "webm", "mkv"):
        path = tmp_path / f"clip.{container}"
        inputs[container] = (path, write_media(track, path, container))
    audio_only = tmp_path / "podcast.wav"
    inputs["wav"] = (audio_only, write_media(track, audio_only, None))
    first_line_end = track.speech[0][1]
    window = {"start_seconds": round(first_line_end + 0.2, 2)}  # the first line stays in English
    options: dict[str, dict[str, Any]] = {"mp4": window, "mov": {"background": "drop"}, "webm": {}, "mkv": {},
                                          "wav": {}}

    async with served(tmp_path / "data", database_url) as svc:
        results = dict(zip(inputs, await asyncio.gather(*(
            _dub(svc, path, content_type, **options[name]) for name, (path, content_type) in inputs.items())),
            strict=True))

    for name, result in results.items():
        files = result["files"]
        assert {"isolated_voice", "background_stem", "master_wav", "captions_vtt"} <= set(files)
        assert result["artifacts"]["background_stem"]["target_language"] is None
        master, rate = soundfile.read(files["master_wav"], dtype="float32", always_2d=True)
        assert abs(len(master) / rate - track.seconds) <= 0.05, name
        if name == "wav":
            assert "video" not in files  # audio-only media get the audio files
            continue
        assert result["artifacts"]["video"]["content_type"] == inputs[name][1]
        _check_video(inputs[name][0], files["video"], name)

    # The window: before it the original soundtrack plays as it was (the dubbed track matches the input's).
    mp4 = results["mp4"]["files"]
    dubbed = audio_track(mp4["video"], 0, tmp_path / "mp4-dub.wav")
    original = audio_track(mp4["video"], 1, tmp_path / "mp4-orig.wav")
    before = slice(int(0.1 * RATE), int((window["start_seconds"] - 0.1) * RATE))
    a, b = dubbed[before], original[before]
    assert float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))) > 0.95
    assert abs(20 * np.log10(rms(a) / rms(b))) <= 1.5

    # `background: drop`: where the dub is silent, the bed is gone too (≥ 40 dB under the input's bed).
    mov = results["mov"]["files"]
    master = soundfile.read(mov["master_wav"], dtype="float32", always_2d=True)[0][:, 0]
    stem, _ = soundfile.read(mov["voice_stem"], dtype="float32", always_2d=True)
    quiet = _quiet_frames(stem[:, 0], len(master))
    assert quiet.sum() >= int(0.5 * RATE / 480), "the dub left no pause to listen to"
    frames = master[: len(quiet) * 480].reshape(-1, 480)[quiet]
    assert 20 * np.log10(max(rms(frames), 1e-9) / rms(track.bed)) <= -40


def _quiet_frames(stem: np.ndarray, length: int) -> np.ndarray:
    """10 ms frames where the dubbed voice stem is silent (and its neighbours too: no edge of a word)."""
    count = min(len(stem), length) // 480
    levels = np.sqrt(np.mean(stem[: count * 480].reshape(-1, 480).astype(np.float64) ** 2, axis=1))
    silent = levels < 1e-4
    return silent & np.roll(silent, 5) & np.roll(silent, -5)
