"""Engine interfaces the pipeline depends on; implementations live beside this module."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from service.engines.types import SynthesizedClip, Transcript


@runtime_checkable
class Transcriber(Protocol):
    name: str
    model: str

    async def transcribe(self, audio_path: str, language: str | None) -> Transcript:
        """Transcribe a file; `language` None or 'auto' asks the engine to detect it."""
        ...


@runtime_checkable
class Translator(Protocol):
    name: str

    async def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """Translate segment texts; the result has exactly one string per input, in order."""
        ...

    def supports(self, source: str, target: str) -> bool: ...

    def pairs(self) -> set[tuple[str, str]]:
        """(source, target) ISO 639-1 pairs that are installed."""
        ...


@runtime_checkable
class Synthesizer(Protocol):
    name: str

    def voice_for(self, language: str) -> str: ...

    def supports(self, language: str) -> bool: ...

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000
    ) -> SynthesizedClip:
        """Speak `text` into a mono WAV; rate > 1 speaks faster using the engine's own rate control."""
        ...
