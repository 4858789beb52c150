"""Which engine runs each stage: the cloud one when its key is configured, the offline one otherwise.

The provider clients are created once (in the app's lifespan) and closed on shutdown.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import httpx
import structlog

from service.engines.protocols import Engines, Synthesizer
from service.errors import EngineError
from service.providers.http import ProviderClient
from service.settings import Settings


@dataclass
class ProviderClients:
    deepgram_stt: ProviderClient | None = None
    deepgram_tts: ProviderClient | None = None
    openai: ProviderClient | None = None
    elevenlabs_isolation: ProviderClient | None = None  # media jobs' voice isolator

    async def aclose(self) -> None:
        for client in (self.deepgram_stt, self.deepgram_tts, self.openai, self.elevenlabs_isolation):
            if client is not None:
                await client.aclose()


def open_clients(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> ProviderClients:
    clients = ProviderClients()
    if settings.deepgram_api_key:
        from service.engines.cloud import deepgram

        clients.deepgram_stt = deepgram.make_stt_client(settings, transport)
        clients.deepgram_tts = deepgram.make_tts_client(settings, transport)
    if settings.openai_api_key:
        from service.engines.cloud import openai_translate

        clients.openai = openai_translate.make_client(settings, transport)
    if settings.elevenlabs_api_key:
        from service.engines.cloud import elevenlabs_isolation

        clients.elevenlabs_isolation = elevenlabs_isolation.make_client(settings, transport)
    return clients


def offline_engines(executor: Executor, model_dir: str | None, multilingual_dir: str | None = None) -> Engines:
    """faster-whisper + Apertium + espeak-ng; `model_dir` None means the bundled tiny.en, `multilingual_dir`
    None English only (see `multilingual_dir`).

    Blocking (filesystem checks, `espeak-ng --voices`): call at startup, not per request.
    Raises EngineError('model_missing' / 'engine_missing') when something is not installed.
    """
    from service.engines.offline.apertium import ApertiumTranslator
    from service.engines.offline.espeak import EspeakSynthesizer
    from service.engines.offline.whisper import WhisperTranscriber

    return Engines(WhisperTranscriber(executor, model_dir, multilingual_dir=multilingual_dir), ApertiumTranslator(),
                   EspeakSynthesizer(executor=executor))


def kokoro_dir(settings: Settings) -> str | None:
    """KOKORO_MODEL_DIR, or the packaged Kokoro-82M joined into DATA_DIR (blocking the first time: ~92 MB
    written and hashed), or None when it is turned off or cannot be had (then espeak-ng speaks everything)."""
    from service.engines.offline import kokoro

    chosen = settings.kokoro_model_dir.strip()
    if chosen.lower() == "none":
        return None
    if chosen:
        return chosen
    try:
        return kokoro.model_dir(settings.data_dir)
    except (EngineError, OSError) as exc:
        structlog.get_logger(__name__).warning("engines.kokoro_unavailable", error=str(exc))
        return None


def offline_synthesizer(settings: Settings, executor: Executor) -> Synthesizer:
    """espeak-ng, with Kokoro-82M beside it unless OFFLINE_VOICE=espeak (see `voice_choice`)."""
    from service.engines.offline.espeak import EspeakSynthesizer
    from service.engines.offline.kokoro import KokoroSynthesizer
    from service.engines.offline.voice_choice import OfflineVoice, OfflineVoices

    fast = EspeakSynthesizer(executor=executor)
    mode = OfflineVoice(settings.offline_voice)
    folder = None if mode == OfflineVoice.ESPEAK else kokoro_dir(settings)
    if folder is None:
        return fast
    return OfflineVoices(fast, KokoroSynthesizer(executor, folder), mode)


def multilingual_dir(settings: Settings) -> str | None:
    """WHISPER_MULTILINGUAL_MODEL_DIR, or the packaged Whisper base joined into DATA_DIR (blocking the first
    time: ~145 MB written and hashed), or None when it is turned off or not installed."""
    from service.engines.offline.whisper import multilingual_model_dir

    chosen = settings.whisper_multilingual_dir.strip()
    if chosen.lower() == "none":
        return None
    if chosen:
        return chosen
    try:
        return multilingual_model_dir(settings.data_dir)
    except (EngineError, OSError) as exc:  # a corrupt part or a full disk costs other languages, not English
        structlog.get_logger(__name__).warning("engines.multilingual_model_unavailable", error=str(exc))
        return None


def choose_engines(settings: Settings, clients: ProviderClients, executor: Executor) -> Engines:
    """Blocking (offline engines look at the filesystem): call it from a thread at start-up."""
    from service.engines.offline.apertium import ApertiumTranslator
    from service.engines.offline.whisper import WhisperTranscriber
    from service.engines.protocols import Transcriber, Translator

    transcriber: Transcriber
    translator: Translator
    synthesizer: Synthesizer
    if clients.deepgram_stt is not None:
        from service.engines.cloud.deepgram_listen import DeepgramTranscriber

        transcriber = DeepgramTranscriber(clients.deepgram_stt, settings.deepgram_stt_model)
    else:
        transcriber = WhisperTranscriber(executor, settings.whisper_model_dir,
                                         multilingual_dir=multilingual_dir(settings))
    if clients.openai is not None:
        from service.engines.cloud.openai_translate import OpenAITranslator

        translator = OpenAITranslator(clients.openai, settings.openai_model)
    else:
        translator = ApertiumTranslator()
    if clients.deepgram_tts is not None:
        from service.engines.cloud.deepgram_speak import DeepgramSynthesizer

        synthesizer = DeepgramSynthesizer(clients.deepgram_tts, dict(settings.deepgram_tts_voices) or None,
                                          executor=executor)
    else:
        synthesizer = offline_synthesizer(settings, executor)
    isolator = None
    if clients.elevenlabs_isolation is not None:
        from service.engines.cloud.elevenlabs_isolation import ElevenLabsIsolator

        isolator = ElevenLabsIsolator(clients.elevenlabs_isolation, executor)
    return Engines(transcriber=transcriber, translator=translator, synthesizer=synthesizer, isolator=isolator)


def describe(engines: Engines) -> dict[str, str]:
    """One line per engine-run stage for `doctor` and the start-up log: the engine's name and its model(s)."""
    lines = {}
    for stage, engine in engines.by_stage().items():
        model = getattr(engine, "model", None)
        if other := getattr(engine, "multilingual_model", None):
            model = f"{model} for English, {other} for other languages and detection"
        lines[str(stage)] = engine.name + (f" ({model})" if model else "")
    lines["separation"] = engines.isolator.name if engines.isolator is not None else "deepfilternet3"
    return lines
