"""Wires the offline engine set the service runs with by default."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from service.engines.apertium import ApertiumTranslator, iso1
from service.engines.espeak import EspeakSynthesizer
from service.engines.protocols import Synthesizer, Transcriber, Translator
from service.engines.whisper import WhisperTranscriber


@dataclass(frozen=True, slots=True)
class Engines:
    transcriber: Transcriber
    translator: Translator
    synthesizer: Synthesizer


def offline_engines(executor: Executor, model_dir: str | None) -> Engines:
    """faster-whisper + Apertium + espeak-ng; `model_dir` None means the bundled tiny.en.

    Blocking (filesystem checks, `espeak-ng --voices`): call at startup, not per request.
    Raises EngineError('model_missing' / 'engine_missing') when something is not installed.
    """
    return Engines(
        transcriber=WhisperTranscriber(executor, model_dir),
        translator=ApertiumTranslator(),
        synthesizer=EspeakSynthesizer(),
    )


def supported_targets(engines: Engines, source: str) -> set[str]:
    """Targets reachable from `source`: the translator has the pair and a voice exists."""
    src = iso1(source)
    return {tgt for s, tgt in engines.translator.pairs() if s == src and engines.synthesizer.supports(tgt)}
