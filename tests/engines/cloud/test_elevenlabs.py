"""ElevenLabs text-to-speech and voice clones against respx fakes in its documented shapes: the request it sends,
the clip it writes, and its errors (401, 422, 429 with Retry-After, a clone that needs verification)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx
import soundfile

from service.engines.cloud import elevenlabs
from service.engines.cloud.elevenlabs import ElevenLabsSynthesizer
from service.errors import EngineError, ErrorCode
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings
from tests.fakes.elevenlabs import KEY, UNPROCESSABLE, FakeElevenLabs, error

FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, total_timeout=10)


def client(settings: Settings) -> ProviderClient:
    return elevenlabs.make_client(settings.with_overrides(elevenlabs_api_key=KEY), policy=FAST)


async def test_a_line_is_spoken_with_its_neighbours_and_speed(settings: Settings, tmp_path: Path) -> None:
    fake = FakeElevenLabs()
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        synth = ElevenLabsSynthesizer(client(settings))
        out = tmp_path / "line.wav"
        usage: dict[str, float] = {}
        clip = await synth.synthesize("Hola, ¿qué tal?", "es", str(out), rate=1.1, sample_rate=48000, usage=usage,
                                      voice="pNInz6obpgDQGcFmaJgB", previous_text="Buenos días.", next_text="Bien.")
    voice_id, body, _ = fake.speak_requests[0]
    assert voice_id == "pNInz6obpgDQGcFmaJgB" and body["model_id"] == "eleven_multilingual_v2"
    assert body["previous_text"] == "Buenos días." and body["next_text"] == "Bien."
    assert body["voice_settings"]["speed"] == pytest.approx(1.1)
    info = soundfile.info(out)
    assert info.samplerate == 48000 and info.channels == 1 and abs(info.duration - clip.duration) < 0.01
    assert clip.duration > 0.5 and usage["tts_characters"] == len("Hola, ¿qué tal?")


async def test_speed_is_kept_within_what_elevenlabs_takes(settings: Settings, tmp_path: Path) -> None:
    fake = FakeElevenLabs()
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        synth = ElevenLabsSynthesizer(client(settings))
        clip = await synth.synthesize("Una línea.", "es", str(tmp_path / "a.wav"), rate=1.6)
    assert fake.speak_requests[0][1]["voice_settings"]["speed"] == elevenlabs.SPEED_MAX == clip.rate


@pytest.mark.parametrize(("answer", "code"), [
    (error(401, "invalid_api_key", "Invalid API key"), ErrorCode.PROVIDER_AUTH),
    (UNPROCESSABLE, ErrorCode.PROVIDER_REJECTED),
    (error(401, "quota_exceeded", "This request exceeds your quota."), ErrorCode.PROVIDER_QUOTA),
], ids=["401", "422", "quota"])
async def test_refusals_become_engine_errors(settings: Settings, tmp_path: Path, answer: httpx.Response,
                                            code: ErrorCode) -> None:
    fake = FakeElevenLabs(faults={"speak": [answer]})
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        synth = ElevenLabsSynthesizer(client(settings))
        with pytest.raises(EngineError) as caught:
            await synth.synthesize("Hola.", "es", str(tmp_path / "a.wav"))
    assert caught.value.code == code and not caught.value.retryable
    assert KEY not in caught.value.message


async def test_busy_answers_are_waited_out(settings: Settings, tmp_path: Path) -> None:
    busy = error(429, "too_many_concurrent_requests", "Too many concurrent requests",
                 {"retry-after": "0", "current-concurrent-requests": "3", "maximum-concurrent-requests": "3"})
    fake = FakeElevenLabs(faults={"speak": [busy, error(429, "system_busy", "busy", {"retry-after": "0"})]})
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        clip = await ElevenLabsSynthesizer(client(settings)).synthesize("Hola.", "es", str(tmp_path / "a.wav"))
    assert clip.duration > 0 and len(fake.speak_requests) == 1


async def test_still_busy_after_the_retries_is_worth_a_later_attempt(settings: Settings, tmp_path: Path) -> None:
    busy = [error(429, "system_busy", "busy", {"retry-after": "0"}) for _ in range(3)]
    with respx.mock(assert_all_called=False) as router:
        FakeElevenLabs(faults={"speak": busy}).install(router)
        with pytest.raises(EngineError) as caught:
            await ElevenLabsSynthesizer(client(settings)).synthesize("Hola.", "es", str(tmp_path / "a.wav"))
    assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE and caught.value.retryable


async def test_clones_are_made_found_by_name_and_deleted(settings: Settings, tmp_path: Path) -> None:
    sample = tmp_path / "sample.wav"
    soundfile.write(sample, [0.0] * 24000, 24000)
    fake = FakeElevenLabs()
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        el = client(settings)
        voice_id, verify = await elevenlabs.add_clone(el, "dub-job-S1", str(sample), "speaker S1")
        assert not verify and fake.voices == {voice_id: "dub-job-S1"}
        assert await elevenlabs.find_clones(el) == {"dub-job-S1": voice_id}
        await elevenlabs.delete_clone(el, voice_id)
        await elevenlabs.delete_clone(el, voice_id)  # already gone: not an error
    assert fake.voices == {} and fake.deleted == [voice_id]


async def test_a_clone_that_needs_verification_is_reported(settings: Settings, tmp_path: Path) -> None:
    sample = tmp_path / "sample.wav"
    soundfile.write(sample, [0.0] * 24000, 24000)
    fake = FakeElevenLabs(requires_verification=True)
    with respx.mock(assert_all_called=False) as router:
        fake.install(router)
        _, verify = await elevenlabs.add_clone(client(settings), "dub-job-S1", str(sample), "speaker S1")
    assert verify
