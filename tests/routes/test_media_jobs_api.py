"""Media jobs through the API: a video or one mixed soundtrack is accepted as kind `media`, and bad media is
refused with a clear 4xx before anything is written (no picture-only or silent video, no image, no truncated
file, nothing over the length limit, no playlist or concat list that names other files, no empty window)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support import Service, running_service, wav_bytes

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


@pytest.fixture
async def service(settings: Settings):  # type: ignore[no-untyped-def]
    async with running_service(settings, run_supervisor=False) as svc:
        yield svc


def _video(out: Path, *extra: str, seconds: float = 2.0, audio: bool = True) -> bytes:
    sources = ["-f", "lavfi", "-i", f"testsrc=size=96x64:rate=10:duration={seconds}"]
    if audio:
        sources += ["-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}"]
    subprocess.run([*FFMPEG, *sources, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    *(["-c:a", "aac"] if audio else []), *extra, str(out)], check=True)
    return out.read_bytes()


async def _refused(service: Service, data: bytes, content_type: str, **options: object) -> dict[str, str]:
    media = await service.upload("mo", data, kind="media", content_type=content_type, filename="clip.mp4")
    answer = await service.client.post("/v1/jobs", headers=service.auth("mo"), json={
        "media_object": media, "source_language": "en", "target_languages": ["es"], **options})
    assert 400 <= answer.status_code < 500, answer.text
    error: dict[str, str] = answer.json()["error"]
    return error


async def test_a_video_makes_a_media_job(service: Service, tmp_path: Path) -> None:
    data = _video(tmp_path / "ok.mp4", "-movflags", "+faststart")
    media = await service.upload("mo", data, kind="media", content_type="video/mp4", filename="talk.mp4")
    answer = await service.client.post("/v1/jobs", headers=service.auth("mo"), json={
        "media_object": media, "source_language": "en", "target_languages": ["es"], "start_seconds": 0.5,
        "end_seconds": 30, "background": "drop"})
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["media"] == {"has_video": True, "container": "mp4", "start_seconds": 0.5, "end_seconds": 2.0,
                            "background": "drop"}
    assert job["inputs"]["voice"]["object_path"] == media


async def test_bad_media_is_refused_and_nothing_is_written(service: Service, tmp_path: Path) -> None:
    # A video without a soundtrack.
    error = await _refused(service, _video(tmp_path / "silent.mp4", audio=False), "video/mp4")
    assert error["code"] == "invalid_media" and "no audio stream" in error["message"]
    # A picture, not a video.
    subprocess.run([*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=96x64:duration=1", "-frames:v", "1",
                    str(tmp_path / "still.png")], check=True)
    assert (await _refused(service, (tmp_path / "still.png").read_bytes(), "video/mp4"))["code"] == "invalid_media"
    # A truncated file (its index up front, its data cut short).
    whole = _video(tmp_path / "whole.mp4", "-movflags", "+faststart", seconds=4.0)
    error = await _refused(service, whole[: len(whole) * 2 // 3], "video/mp4")
    assert error["code"] == "invalid_media"
    # A soundtrack of three hours (the limit is two).
    subprocess.run([*FFMPEG, "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "10800", "-c:a", "flac",
                    str(tmp_path / "long.flac")], check=True)
    error = await _refused(service, (tmp_path / "long.flac").read_bytes(), "audio/flac")
    assert error["code"] == "media_too_long"
    # Files that name other files: an HLS playlist and a concat list, each dressed as a video.
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    assert (await _refused(service, playlist, "video/mp4"))["code"] == "invalid_media"
    concat = b"ffconcat version 1.0\nfile '/etc/passwd'\n"
    assert (await _refused(service, concat, "video/x-matroska"))["code"] == "invalid_media"
    # A window that is none.
    ok = _video(tmp_path / "ok.mp4")
    assert (await _refused(service, ok, "video/mp4", start_seconds=1.5, end_seconds=1.0))["code"] == "invalid_window"
    assert (await _refused(service, ok, "video/mp4", start_seconds=9.0))["code"] == "invalid_window"
    rows = await service.count_rows()
    assert (rows["jobs"], rows["language_tasks"], rows["artifacts"]) == (0, 0, 0)


async def test_media_and_voice_do_not_mix(service: Service, tmp_path: Path) -> None:
    voice = await service.upload("mo", wav_bytes(1.0))
    media = await service.upload("mo", _video(tmp_path / "v.mp4"), kind="media", content_type="video/mp4",
                                 filename="v.mp4")
    both = await service.client.post("/v1/jobs", headers=service.auth("mo"), json={
        "media_object": media, "voice_object": voice, "target_languages": ["es"]})
    assert both.status_code == 422 and both.json()["error"]["code"] == "invalid_field"
    window_without_media = await service.client.post("/v1/jobs", headers=service.auth("mo"), json={
        "voice_object": voice, "target_languages": ["es"], "start_seconds": 1})
    assert window_without_media.status_code == 422
    media_as_voice = await service.client.post("/v1/jobs", headers=service.auth("mo"), json={
        "voice_object": media, "target_languages": ["es"]})
    assert media_as_voice.status_code == 422
    # A video is only taken as media.
    refused = await service.client.post("/v1/uploads", headers=service.auth("mo"), json={"files": [
        {"kind": "voice", "filename": "v.mp4", "content_type": "video/mp4", "size_bytes": 1000}]})
    assert refused.status_code == 422 and "kind 'media'" in refused.json()["error"]["message"]
    too_big = await service.client.post("/v1/uploads", headers=service.auth("mo"), json={"files": [
        {"kind": "media", "filename": "v.mp4", "content_type": "video/mp4", "size_bytes": 3 * 1024 ** 3}]})
    assert too_big.status_code == 413
    assert (await service.count_rows())["jobs"] == 0
