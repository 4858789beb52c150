"""ElevenLabs text-to-speech as a `Synthesizer`, and its instant voice clones (`/v1/voices/add`, delete, list).

Lines are spoken by `POST /v1/text-to-speech/{voice_id}` with `eleven_multilingual_v2` (one voice for every
language), asking for raw 16-bit PCM at 24 kHz, with the neighbouring lines' text (`previous_text`,
`next_text`) so a line's prosody runs on from the one before it. `voice_settings.speed` (0.7-1.2) is the rate
control. Calls go through the shared `ProviderClient` (retries 429 and 5xx, honouring `Retry-After`), with the
plan's concurrency as its semaphore. Errors come as `{"detail": {"status", "message"}}` (401
`invalid_api_key`, 429 `too_many_concurrent_requests` / `system_busy`, 400 `voice_not_found`) or, for a
malformed request, 422 `{"detail": [{"loc", "msg", "type"}]}`.

A clone is named `dub-<job id>-<speaker>`: the name finds it again when a process died between creating it
and recording its id (`find_clones`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from concurrent.futures import Executor
from typing import Any

import aiofiles
import anyio
import httpx
import numpy as np
import soundfile as sf

from service.audio import speech_clip
from service.engines.protocols import Usage, add_usage, check_synthesis_input
from service.engines.types import SynthesizedClip
from service.errors import EngineError, ErrorCode, ProviderError
from service.providers.errors import engine_error, error_parser
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings
from service.workpool import cpu_pool

PROVIDER = "elevenlabs"
SPEAK = "/v1/text-to-speech/{voice_id}"
ADD_VOICE = "/v1/voices/add"
VOICE = "/v1/voices/{voice_id}"
VOICES = "/v1/voices"
OUTPUT_FORMAT = "pcm_24000"
PCM_RATE = 24000
SPEED_MIN, SPEED_MAX = 0.7, 1.2
MAX_REQUEST_CHARS = 10_000  # eleven_multilingual_v2's limit a request
CLONE_PREFIX = "dub-"
# The languages eleven_multilingual_v2 speaks (ISO 639-1).
LANGUAGES = frozenset({
    "en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "fil", "pl", "sv", "bg", "ro",
    "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru"})
DEFAULT_VOICE = "21m00Tcm4TlvDq8ikWAM"  # Rachel, premade
REQUEST_ID_HEADERS = ("request-id", "x-request-id")


def _extract(body: Any) -> tuple[str | None, str | None]:
    """`{"detail": {"status", "message"}}`, or a 422's `{"detail": [{"loc", "msg", "type"}]}`."""
    if not isinstance(body, dict):
        return None, str(body)[:300]
    detail = body.get("detail")
    if isinstance(detail, dict):
        return detail.get("status") or detail.get("code"), detail.get("message")
    if isinstance(detail, list):
        parts = [f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail if isinstance(d, dict)]
        return "validation_error", "; ".join(parts) or None
    return None, str(detail or body)[:300]


def failure(exc: ProviderError, what: str) -> EngineError:
    """ElevenLabs answers an exhausted quota with a 401 `quota_exceeded`: that is the quota, not the key."""
    if exc.code == "quota_exceeded":
        exc = ProviderError(exc.provider, 402, exc.code, exc.message, request_id=exc.request_id)
    return engine_error(exc, "ElevenLabs", what)


def make_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                policy: RetryPolicy | None = None) -> ProviderClient:
    key = settings.elevenlabs_api_key
    if not key:
        raise EngineError(ErrorCode.PROVIDER_AUTH, "ELEVENLABS_API_KEY is not set")
    limit = max(settings.elevenlabs_concurrency, 1)
    return ProviderClient(
        name=PROVIDER, base_url=settings.elevenlabs_base_url.rstrip("/"), headers={"xi-api-key": key},
        concurrency=limit, max_connections=limit, policy=policy or RetryPolicy(),
        error_parser=error_parser(_extract, key), request_id_headers=REQUEST_ID_HEADERS,
        # A concurrency 429 clears as soon as one of our own requests ends: it is waited out, not given up.
        timeout=httpx.Timeout(30.0, read=180.0, write=300.0), transport=transport,
    )


def clone_name(job_id: str, speaker: str) -> str:
    return f"{CLONE_PREFIX}{job_id}-{speaker}"


async def add_clone(client: ProviderClient, name: str, sample_path: str, description: str) -> tuple[str, bool]:
    """An instant voice clone from one sample file: (voice_id, requires_verification)."""
    sample = await anyio.Path(sample_path).read_bytes()  # a bounded sample (<= 120 s)
    try:
        data = await client.json("POST", ADD_VOICE, endpoint="voices_add",
                                 data={"name": name, "description": description, "remove_background_noise": "false"},
                                 files=[("files", ("sample.wav", sample, "audio/wav"))])
    except ProviderError as exc:
        raise failure(exc, "voice cloning") from None
    voice_id = data.get("voice_id") if isinstance(data, dict) else None
    if not isinstance(voice_id, str) or not voice_id:
        raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "ElevenLabs voice cloning answered without a voice_id")
    return voice_id, bool(data.get("requires_verification"))


async def delete_clone(client: ProviderClient, voice_id: str) -> None:
    """Delete a voice; one that is already gone (404, or 400 `voice_not_found`) counts as deleted."""
    try:
        await client.send("DELETE", VOICE.format(voice_id=voice_id), endpoint="voices_delete")
    except ProviderError as exc:
        if exc.status == 404 or exc.code == "voice_not_found":
            return
        raise failure(exc, "voice deletion") from None


async def find_clones(client: ProviderClient, prefix: str = CLONE_PREFIX) -> dict[str, str]:
    """{name: voice_id} of this account's cloned voices whose name starts with `prefix`."""
    try:
        data = await client.json("GET", VOICES, endpoint="voices_list")
    except ProviderError as exc:
        raise failure(exc, "voice listing") from None
    voices = data.get("voices") if isinstance(data, dict) else None
    return {str(v["name"]): str(v["voice_id"]) for v in voices or []
            if isinstance(v, dict) and str(v.get("name", "")).startswith(prefix) and v.get("voice_id")}


def _pcm_to_wav(raw_path: str, wav_path: str) -> None:
    samples = np.fromfile(raw_path, dtype="<i2")
    sf.write(wav_path, samples, PCM_RATE, subtype="PCM_16")


class ElevenLabsSynthesizer:
    """Synthesizer over ElevenLabs voices (`voice` is a voice id: premade or a job's clone)."""

    name = "elevenlabs"
    pauses_between_words = False
    takes_neighbours = True

    def __init__(self, client: ProviderClient, model: str = "eleven_multilingual_v2", *,
                 executor: Executor | None = None, default_voice: str = DEFAULT_VOICE) -> None:
        self.client = client
        self.model = model
        self._executor = executor
        self._default_voice = default_voice

    def voice_for(self, language: str) -> str:
        return self._default_voice

    def supports(self, language: str) -> bool:
        return language.split("-")[0].lower() in LANGUAGES

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None, word_pause: float = 0.0, voice: str | None = None,
        previous_text: str | None = None, next_text: str | None = None,
    ) -> SynthesizedClip:
        check_synthesis_input(self, "ElevenLabs", text, language, rate, sample_rate)
        text = " ".join(text.split())[:MAX_REQUEST_CHARS]
        speed = round(min(max(rate, SPEED_MIN), SPEED_MAX), 3)
        body: dict[str, Any] = {"text": text, "model_id": self.model,
                                "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": speed}}
        if previous_text:
            body["previous_text"] = previous_text
        if next_text:
            body["next_text"] = next_text
        if self.model != "eleven_multilingual_v2":  # the newer models take the language; v2 detects it
            body["language_code"] = language.split("-")[0].lower()
        voice_id = voice or self._default_voice
        raw = f"{out_path}.{uuid.uuid4().hex}.pcm"
        wav = f"{raw}.wav"
        size = 0
        try:
            try:
                async with self.client.stream("POST", SPEAK.format(voice_id=voice_id), endpoint="text_to_speech",
                                              params={"output_format": OUTPUT_FORMAT}, json=body) as response:
                    async with aiofiles.open(raw, "wb") as handle:
                        async for chunk in response.aiter_bytes():
                            size += len(chunk)
                            await handle.write(chunk)
            except ProviderError as exc:
                raise failure(exc, "synthesis") from None
            except httpx.HTTPError as exc:
                raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE,
                                  f"ElevenLabs synthesis: the audio stream broke off ({type(exc).__name__})") from None
            if size < 2:
                raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "ElevenLabs synthesis returned no audio")
            add_usage(usage, tts_characters=len(text))
            await asyncio.to_thread(_pcm_to_wav, raw, wav)
            if self._executor is not None:
                await cpu_pool.run(self._executor, speech_clip.join_trimmed, [wav], out_path, sample_rate)
            else:
                await asyncio.to_thread(speech_clip.join_trimmed, [wav], out_path, sample_rate)
        finally:
            for path in (raw, wav):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        duration = sf.info(out_path).duration
        return SynthesizedClip(path=out_path, duration=round(float(duration), 4), rate=speed)
