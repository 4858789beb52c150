"""ElevenLabs' voice isolator (`POST /v1/audio-isolation`): the form upload that goes over the wire, the audio that
comes back laid against the mix, and how failures surface. Answered by respx in the documented shape: a
multipart form with the `audio` file (and `file_format`), `xi-api-key` in the header, audio bytes back."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import respx
import soundfile as sf

from service.engines.cloud.elevenlabs_isolation import ElevenLabsIsolator, make_client
from service.errors import EngineError
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings

KEY = "sk_0123456789abcdefSECRETELEVENLABSKEY"
BASE = "https://api.elevenlabs.test"
FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, total_timeout=10)
SETTINGS = Settings(elevenlabs_api_key=KEY, elevenlabs_base_url=BASE)


@pytest.fixture
async def client() -> AsyncIterator[ProviderClient]:
    made = make_client(SETTINGS, policy=FAST)
    yield made
    await made.aclose()


def _mix(path: Path, seconds: float = 2.0) -> None:
    t = np.arange(int(seconds * 48_000)) / 48_000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 48_000, subtype="FLOAT")


def _mp3(seconds: float) -> bytes:
    """What the isolator answers: MP3 audio."""
    return subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                           f"sine=frequency=220:duration={seconds}:sample_rate=44100", "-c:a", "libmp3lame",
                           "-f", "mp3", "-"], check=True, capture_output=True).stdout


async def test_the_mix_goes_up_as_a_form_and_the_voice_comes_back_aligned(client: ProviderClient,
                                                                         tmp_path: Path) -> None:
    _mix(tmp_path / "mix.wav")
    seen: list[httpx.Request] = []

    def isolate(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=_mp3(2.05), headers={"Content-Type": "audio/mpeg"})

    usage: dict[str, float] = {}
    with respx.mock(assert_all_called=True) as router, ThreadPoolExecutor(1) as pool:
        router.post(f"{BASE}/v1/audio-isolation").mock(side_effect=isolate)
        await ElevenLabsIsolator(client, pool).isolate(str(tmp_path / "mix.wav"), str(tmp_path / "voice.wav"),
                                                       usage=usage)
    request = seen[0]
    assert request.headers["xi-api-key"] == KEY
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.content
    assert b'name="file_format"\r\n\r\nother\r\n' in body
    assert b'name="audio"; filename="soundtrack.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF' in body
    info = sf.info(tmp_path / "voice.wav")
    assert (info.samplerate, info.channels, info.frames) == (48_000, 1, 96_000)  # the mix's own length
    assert usage == {"elevenlabs_isolation_seconds": 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav", "voice.wav"]  # nothing left behind


async def test_a_bad_key_fails_for_good_and_an_outage_is_retried(client: ProviderClient, tmp_path: Path) -> None:
    _mix(tmp_path / "mix.wav", 0.5)
    detail = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    with respx.mock() as router, ThreadPoolExecutor(1) as pool:
        router.post(f"{BASE}/v1/audio-isolation").mock(return_value=httpx.Response(401, json=detail))
        with pytest.raises(EngineError) as failed:
            await ElevenLabsIsolator(client, pool).isolate(str(tmp_path / "mix.wav"), str(tmp_path / "v.wav"))
    assert failed.value.code == "provider_auth" and not failed.value.retryable
    assert KEY not in failed.value.message

    with respx.mock() as router, ThreadPoolExecutor(1) as pool:
        route = router.post(f"{BASE}/v1/audio-isolation")
        route.side_effect = [httpx.Response(503, json={"detail": "busy"}),
                             httpx.Response(200, content=_mp3(0.5), headers={"Content-Type": "audio/mpeg"})]
        await ElevenLabsIsolator(client, pool).isolate(str(tmp_path / "mix.wav"), str(tmp_path / "v.wav"))
        assert route.call_count == 2
    assert sf.info(tmp_path / "v.wav").frames == 24_000
