"""Deepgram text-to-speech (`POST /v1/speak`, Aura-2 voices) as a `Synthesizer`.

Asks for 16-bit WAV, splits long texts at sentence boundaries (about 2,000 characters a request), then
joins the parts, trims leading and trailing silence and writes a mono WAV at the requested rate, as the
espeak-ng engine does (`audio/speech_clip.py`, in the process pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from concurrent.futures import Executor

import aiofiles
import httpx
import soundfile as sf
import structlog

from service.audio import speech_clip
from service.engines.cloud.deepgram import failure
from service.engines.protocols import Usage, add_usage, check_synthesis_input
from service.engines.types import SynthesizedClip
from service.errors import EngineError, ErrorCode, ProviderError
from service.languages import normalize
from service.providers.http import ProviderClient
from service.providers.redaction import redact
from service.settings import Settings
from service.workpool import cpu_pool

log = structlog.get_logger(__name__)

SPEAK = "/v1/speak"

# Default Aura-2 voice per language; names as in Deepgram's API (`aura-2-<voice>-<lang>`).
AURA2_VOICES: dict[str, str] = {
    "en": "aura-2-thalia-en",
    "es": "aura-2-celeste-es",
    "de": "aura-2-aurelia-de",
    "fr": "aura-2-agathe-fr",
    "it": "aura-2-livia-it",
    "ja": "aura-2-ama-ja",
    "nl": "aura-2-rhea-nl",
}
# Aura-2 speed control: 0.7-1.5 (Spanish: 0.9 or more, below that it may stumble). Deepgram documents
# it for English and Spanish voices; for the others the clip is spoken at the natural rate (1.0).
SPEED_MIN, SPEED_MAX = 0.7, 1.5
SPEED_MIN_BY_LANGUAGE = {"es": 0.9}
SPEED_LANGUAGES = frozenset({"en", "es"})
MAX_REQUEST_CHARS = 2000
# linear16 sample rates Aura accepts; another requested rate is resampled from 24 kHz by soxr.
AURA_SAMPLE_RATES = frozenset({8000, 16000, 24000, 32000, 48000})
AURA_DEFAULT_SAMPLE_RATE = 24000
_SPLIT_SENTENCES = re.compile(r"(?<=[.!?\u2026])\s+|(?<=[\u3002\uff01\uff1f])")
_SPLIT_CLAUSES = re.compile(r"(?<=[,;:\u3001\uff0c])\s*")


def split_text(text: str, limit: int = MAX_REQUEST_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends, else clauses, else spaces."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return [text] if text else []

    def units(part: str, splitters: list[re.Pattern[str]]) -> list[str]:
        if len(part) <= limit:
            return [part]
        if not splitters:
            words = part.split(" ")
            if len(words) > 1:
                return [w for chunk in _pack(words, limit, " ") for w in units(chunk, [])]
            return [part[i:i + limit] for i in range(0, len(part), limit)]
        pieces = [p.strip() for p in splitters[0].split(part) if p.strip()]
        if len(pieces) == 1:
            return units(part, splitters[1:])
        return [u for p in pieces for u in units(p, splitters[1:])]

    return _pack(units(text, [_SPLIT_SENTENCES, _SPLIT_CLAUSES]), limit, " ")


def _pack(units: list[str], limit: int, sep: str) -> list[str]:
    """Consecutive units joined while they fit in `limit`."""
    out: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{sep}{unit}" if current else unit
        if len(candidate) <= limit:
            current = candidate
        else:
            if current:
                out.append(current)
            current = unit
    if current:
        out.append(current)
    return out


class DeepgramSynthesizer:
    """Synthesizer over Aura-2 voices; `rate` maps to Aura-2's `speed` where Deepgram supports it."""

    name = "deepgram-aura"
    pauses_between_words = False

    def __init__(self, client: ProviderClient, voices: dict[str, str] | None = None, *, timeout: float = 120.0,
                 max_request_chars: int = MAX_REQUEST_CHARS, executor: Executor | None = None) -> None:
        self.client = client
        self._executor = executor  # joins and trims the parts; without one, a thread does
        self.voices = dict(AURA2_VOICES)
        for lang, voice in (voices or {}).items():
            # `en-gb` overrides only en-GB; a list (`es=a|b`) names the language's voices, the first its default
            self.voices[lang.strip().lower().replace("_", "-")] = voice.split("|")[0].strip()
        self._timeout = timeout
        self.max_request_chars = max_request_chars
        self._speed_refused: set[str] = set()  # voices whose requests with `speed` came back 400

    def _key(self, language: str) -> str:
        code = language.strip().lower().replace("_", "-")
        return code if code in self.voices else (normalize(code) or code)

    def voice_for(self, language: str) -> str:
        voice = self.voices.get(self._key(language))
        if voice is None:
            raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"Deepgram Aura has no voice for {language!r}")
        return voice

    def supports(self, language: str) -> bool:
        return self._key(language) in self.voices

    def speed_for(self, language: str, rate: float) -> float | None:
        """The speed to send, clamped to what Aura-2 accepts; None when speed control is not available."""
        voice = self.voice_for(language)
        lang = normalize(language)
        if not voice.startswith("aura-2-") or lang not in SPEED_LANGUAGES or voice in self._speed_refused:
            return None
        return round(min(max(rate, SPEED_MIN_BY_LANGUAGE.get(lang, SPEED_MIN)), SPEED_MAX), 3)

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None, word_pause: float = 0.0, voice: str | None = None,
    ) -> SynthesizedClip:
        check_synthesis_input(self, "Deepgram Aura", text, language, rate, sample_rate)
        pieces = split_text(text, self.max_request_chars)
        voice = voice or self.voice_for(language)
        speed = self.speed_for(language, rate)
        fetch_rate = sample_rate if sample_rate in AURA_SAMPLE_RATES else AURA_DEFAULT_SAMPLE_RATE
        stem = f"{out_path}.{uuid.uuid4().hex}"  # beside the output, unique per call
        parts: list[str] = []
        try:
            for index, piece in enumerate(pieces):
                part = f"{stem}.dg{index}.wav"
                parts.append(part)
                speed = await self._speak_with_fallback(piece, voice, speed, fetch_rate, part, first=index == 0)
                add_usage(usage, tts_characters=len(piece))
            await self._finish(parts, out_path, sample_rate)
        finally:
            for part in parts:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
        duration = sf.info(out_path).duration  # header read only: cheap enough for the loop
        return SynthesizedClip(path=out_path, duration=round(float(duration), 4),
                               rate=speed if speed is not None else 1.0)

    async def _speak_with_fallback(self, text: str, voice: str, speed: float | None, sample_rate: int, path: str,
                                   *, first: bool) -> float | None:
        """Speak one piece; if the first request with `speed` is refused (400) but works without, go on without."""
        try:
            await self._speak(text, voice, speed, sample_rate, path)
            return speed
        except ProviderError as exc:
            if not (first and speed is not None and speed != 1.0 and exc.status == 400):
                raise failure(exc, "synthesis") from None
            refused = exc
        try:
            await self._speak(text, voice, None, sample_rate, path)
        except ProviderError as again:  # not the speed after all (or a new failure): report this one
            raise failure(again, "synthesis") from None
        self._speed_refused.add(voice)
        log.warning("deepgram.speed_refused", voice=voice, code=refused.code, message=redact(refused.message))
        return None

    async def _speak(self, text: str, voice: str, speed: float | None, sample_rate: int, path: str) -> None:
        params: dict[str, str] = {"model": voice, "encoding": "linear16", "container": "wav",
                                  "sample_rate": str(sample_rate)}
        if speed is not None and speed != 1.0:  # 1.0 is the default: leave it out
            params["speed"] = f"{speed:g}"
        size = 0
        try:
            async with self.client.stream("POST", SPEAK, endpoint="speak", params=params, json={"text": text}) as resp:
                async with aiofiles.open(path, "wb") as handle:
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        await handle.write(chunk)
        except httpx.HTTPError as exc:  # the connection broke while the audio was streaming
            raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE,
                              f"Deepgram synthesis: the audio stream broke off ({type(exc).__name__})") from None
        if size <= 44:  # a WAV header and nothing else
            raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE, f"Deepgram synthesis returned no audio ({size} bytes)")

    async def _finish(self, parts: list[str], out_path: str, sample_rate: int) -> None:
        """Join the parts, trim the ends, write mono 16-bit PCM at `sample_rate`."""
        if self._executor is not None:
            await cpu_pool.run(self._executor, speech_clip.join_trimmed, parts, out_path, sample_rate)
        else:
            await asyncio.to_thread(speech_clip.join_trimmed, parts, out_path, sample_rate)


def voices_from_settings(settings: Settings) -> dict[str, str]:
    """`DEEPGRAM_TTS_VOICES` overrides (language, voice) as a mapping."""
    return dict(settings.deepgram_tts_voices)
