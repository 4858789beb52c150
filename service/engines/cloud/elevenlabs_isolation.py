"""ElevenLabs' voice isolator for media jobs (`POST /v1/audio-isolation`, `xi-api-key`), when ELEVENLABS_API_KEY is
set: the mixed soundtrack goes up as a form upload (`audio`, with `file_format: other`), the voice comes back as
audio bytes (MP3), streamed to disk and decoded to the 48 kHz mono WAV separation works on, its length that of
the mix. Retries and backoff happen in the shared `ProviderClient`; what is left becomes the engine's error.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from typing import Any

import anyio
import httpx

from service.audio.media_files import fit_length
from service.audio.separation import RATE
from service.audio.wavfiles import to_pcm16
from service.engines.protocols import Usage, add_usage
from service.errors import EngineError, ErrorCode, ProviderError
from service.providers.bodies import MultipartFileBody
from service.providers.errors import engine_error, error_parser
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings
from service.workpool import cpu_pool

PROVIDER = "elevenlabs"
ENDPOINT = "/v1/audio-isolation"


def _extract(body: Any) -> tuple[str | None, str | None]:
    """ElevenLabs errors: `{"detail": {"status": "...", "message": "..."}}` (or a plain `detail` string)."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        return detail.get("status"), detail.get("message")
    if isinstance(detail, str):
        return None, detail
    return None, None


def make_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                policy: RetryPolicy | None = None) -> ProviderClient:
    key = settings.elevenlabs_api_key
    if not key:
        raise EngineError(ErrorCode.PROVIDER_AUTH, "ELEVENLABS_API_KEY is not set")
    return ProviderClient(name=PROVIDER, base_url=settings.elevenlabs_base_url.rstrip("/"),
                          headers={"xi-api-key": key}, concurrency=2, max_connections=2,
                          timeout=httpx.Timeout(30.0, read=1800.0, write=600.0), policy=policy or RetryPolicy(),
                          error_parser=error_parser(_extract, key), transport=transport)


class ElevenLabsIsolator:
    name = PROVIDER

    def __init__(self, client: ProviderClient, executor: Executor) -> None:
        self.client = client
        self.executor = executor

    async def isolate(self, mix_path: str, out_path: str, *, usage: Usage | None = None) -> None:
        upload = f"{out_path}.upload.wav"
        answer = f"{out_path}.answer"
        try:
            seconds = await cpu_pool.run(self.executor, to_pcm16, mix_path, upload)  # half the bytes of float
            body = MultipartFileBody("audio", upload, "soundtrack.wav", "audio/wav", {"file_format": "other"})
            try:
                async with self.client.stream("POST", ENDPOINT, endpoint="audio-isolation", content=body,
                                              headers={"Content-Type": body.content_type}) as response:
                    async with await anyio.open_file(answer, "wb") as sink:
                        async for chunk in response.aiter_bytes():
                            await sink.write(chunk)
            except ProviderError as exc:
                raise engine_error(exc, "ElevenLabs", "voice isolation") from None
            except httpx.HTTPError as exc:
                raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE,
                                  f"ElevenLabs voice isolation broke off: {type(exc).__name__}") from exc
            await cpu_pool.run(self.executor, fit_length, answer, out_path, RATE, round(seconds * RATE))
            add_usage(usage, elevenlabs_isolation_seconds=round(seconds, 3))
        finally:
            for path in (upload, answer):
                await anyio.to_thread.run_sync(_remove, path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
