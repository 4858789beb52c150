"""Engine interfaces the pipeline depends on; implementations live beside this module.

`usage` arguments are per-task counters an engine adds to (audio seconds, characters, tokens), the
base for cost reports; engines that cost nothing may ignore them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.domain import WORK_STAGES, Stage
from service.engines.types import LanguageGuess, SynthesizedClip, Transcript
from service.errors import EngineError, ErrorCode

Usage = dict[str, float]
# Not a cost: words a translator left in the source language because it did not know them, counted by the
# engines that can tell (Apertium). The translating stage takes it out of the usage into the manifest.
UNTRANSLATED_WORDS = "untranslated_words"


def add_usage(usage: Usage | None, **amounts: float) -> None:
    if usage is None:
        return
    for key, amount in amounts.items():
        usage[key] = usage.get(key, 0) + amount


@runtime_checkable
class Transcriber(Protocol):
    name: str
    model: str
    # True when the engine can fetch the audio from a URL itself (then the worker never downloads it).
    accepts_url: bool
    @property
    def detects(self) -> bool:
        """True when it can tell the spoken language itself (source_language "auto" means more than English)."""
        ...

    def understands(self, language: str) -> bool:
        """Whether it can transcribe speech in `language` (ISO 639-1, or "auto")."""
        ...

    async def detect(self, audio_path: str) -> LanguageGuess | None:
        """The language of the first minute of speech, ahead of transcription; None when the engine
        detects only while transcribing (the transcript then says) or hears no speech."""
        ...

    async def transcribe(
        self, audio_path: str | None, language: str | None, *, audio_url: str | None = None,
        usage: Usage | None = None, on_progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """Transcribe a local file (or `audio_url`); `language` None asks the engine to detect it. Engines that
        can tell how far they got call `on_progress(fraction of the audio)` on the event loop as they go."""
        ...


@runtime_checkable
class Translator(Protocol):
    name: str

    async def translate(
        self, texts: list[str], source: str, target: str, *, budgets: list[int | None] | None = None,
        groups: list[int] | None = None, usage: Usage | None = None,
    ) -> list[str]:
        """Translate segment texts; exactly one string per input, in order.

        `groups` ties consecutive segments into one sentence (the speaker paused inside it): the
        engine translates the sentence as a whole and divides the translation among its segments, so
        a sentence cut by a pause is never translated as two fragments. `budgets` gives each segment
        a length in characters its time slot can hold; engines that can (an LLM) aim for it.
        """
        ...

    def supports(self, source: str, target: str) -> bool: ...

    def pairs(self) -> set[tuple[str, str]]:
        """(source, target) ISO 639-1 pairs it can translate, directly or through a pivot; may be empty for
        engines that do any pair."""
        ...

    def pivot_for(self, source: str, target: str) -> str | None:
        """The language a pair goes through when there is no direct one (e.g. 'es' for fr->en), else None."""
        ...


@runtime_checkable
class Shortener(Protocol):
    """A translator that can say a line again, shorter, when it does not fit its slot."""

    async def shorten(
        self, text: str, source_text: str, source: str, target: str, max_chars: int, *, usage: Usage | None = None
    ) -> str: ...


@runtime_checkable
class Synthesizer(Protocol):
    name: str
    pauses_between_words: bool

    def voice_for(self, language: str) -> str: ...

    def supports(self, language: str) -> bool: ...

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None, word_pause: float = 0.0, voice: str | None = None,
    ) -> SynthesizedClip:
        """Speak `text` into a mono WAV; rate > 1 speaks faster using the engine's own rate control.

        `word_pause` (seconds, engines whose `pauses_between_words` is True) lengthens the pause between
        words: how a line that is short even at the slowest rate fills its time, as a slow reader would.
        `voice` names one of the engine's own voices (a speaker's); None means `voice_for(language)`.
        """
        ...


def check_synthesis_input(synthesizer: Synthesizer, engine: str, text: str, language: str, rate: float,
                          sample_rate: int) -> None:
    """What every `synthesize` checks first, so each engine refuses the same input with the same error."""
    if not text.strip():
        raise EngineError(ErrorCode.EMPTY_TEXT, "nothing to synthesize")
    if not synthesizer.supports(language):
        raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"{engine} has no voice for {language!r}")
    if rate <= 0 or sample_rate <= 0:
        raise EngineError(ErrorCode.BAD_INPUT, f"rate and sample_rate must be positive, got {rate}, {sample_rate}")


class VoiceIsolator(Protocol):
    """Takes the voice out of a mixed soundtrack (a media job's separation, `stages/separation.py`)."""

    name: str

    async def isolate(self, mix_path: str, out_path: str, *, usage: Usage | None = None) -> None:
        """The voice of `mix_path` (48 kHz mono WAV) into `out_path`: a WAV at the same rate, aligned with it."""
        ...


@dataclass(frozen=True, slots=True)
class Engines:
    """The engine each stage uses, chosen once at start-up (`selection.choose_engines`)."""

    transcriber: Transcriber
    translator: Translator
    synthesizer: Synthesizer
    # Media jobs: the cloud's voice isolator when one is configured; None separates offline (DeepFilterNet3).
    isolator: VoiceIsolator | None = None

    def by_stage(self) -> dict[Stage, Transcriber | Translator | Synthesizer]:
        """The stages an engine runs, in pipeline order, each with its engine."""
        return {stage: getattr(self, field) for stage, field in _ENGINE_FIELDS.items()}


# Which engine runs which stage: the one place that says so. The other work stages are our own code.
_ENGINE_FIELDS: dict[Stage, str] = {
    Stage.STT: "transcriber", Stage.TRANSLATING: "translator", Stage.DUBBING: "synthesizer",
}
BUILTIN = "builtin"


def engine_name(engines: Engines | None, stage: str) -> str:
    """The engine a stage runs on, as logs, events and metrics name it: `builtin` for the work stages that are
    our own code (mixing, exporting), `none` outside the work stages or when no engines could be loaded."""
    if stage not in WORK_STAGES:
        return "none"
    if stage not in _ENGINE_FIELDS:
        return BUILTIN
    return "none" if engines is None else str(getattr(engines, _ENGINE_FIELDS[Stage(stage)]).name)
