"""Which offline voice speaks a language: Kokoro-82M ("natural", slower) or espeak-ng ("fast").

OFFLINE_VOICE sets the default: `kokoro` (wherever Kokoro speaks the language), `espeak`, or `auto` (Kokoro
only where bench/intelligibility.py heard it understood better: `KOKORO_IS_CLEARER`). A job may ask for one
itself (`offline_voice` in POST /v1/jobs: natural | fast | auto); a language Kokoro does not speak stays with
espeak-ng whatever was asked, and the manifest says which engine and style spoke.
"""

from __future__ import annotations

from enum import StrEnum

from service.engines.offline.espeak import EspeakSynthesizer
from service.engines.offline.kokoro import KokoroSynthesizer
from service.engines.protocols import Synthesizer, Usage
from service.engines.types import SynthesizedClip


class OfflineVoice(StrEnum):
    """OFFLINE_VOICE, the server's default."""

    KOKORO = "kokoro"
    ESPEAK = "espeak"
    AUTO = "auto"


class JobVoice(StrEnum):
    """A job's `offline_voice`: what the page offers."""

    NATURAL = "natural"  # Kokoro-82M: far easier to understand; a 10-minute dub took 370 s against 55 s
    FAST = "fast"  # espeak-ng: robotic, synthesis costs next to nothing
    AUTO = "auto"  # the server's OFFLINE_VOICE


# Measured (docs/offline-voice.md): Whisper base's word error rate on Kokoro's jm_kumo far below espeak-ng's
# (es 4.9 vs 47.1 %, fr 25.2 vs 90.5 %, ca 29.8 vs 55.4 %, it 11.7 vs 48.3 %, pt 18.2 vs 101.8 %). English is not
# among them: espeak-ng's is already understood (4.7 % against 3.1 %, one word in 64) at a fraction of the cost.
KOKORO_IS_CLEARER = frozenset({"es", "fr", "ca", "it", "pt"})


def _base(language: str) -> str:
    return language.strip().lower().replace("_", "-").split("-")[0]


class OfflineVoices:
    """The offline Synthesizer with both voices; `for_job` picks one per language and job, and the protocol's
    own methods speak with the server's default."""

    name = "espeak-ng/kokoro"
    pauses_between_words = True

    def __init__(self, fast: EspeakSynthesizer, natural: KokoroSynthesizer, default: OfflineVoice) -> None:
        self.fast = fast
        self.natural = natural
        self.default = default
        self.model = f"{natural.model} beside espeak-ng, OFFLINE_VOICE={default}"

    def for_job(self, language: str, asked: str = JobVoice.AUTO) -> Synthesizer:
        if not self.natural.supports(language) or asked == JobVoice.FAST:
            return self.fast
        if asked == JobVoice.NATURAL or self.default == OfflineVoice.KOKORO:
            return self.natural
        if self.default == OfflineVoice.AUTO and _base(language) in KOKORO_IS_CLEARER:
            return self.natural
        return self.fast

    def voice_for(self, language: str) -> str:
        return self.for_job(language).voice_for(language)

    def supports(self, language: str) -> bool:
        return self.fast.supports(language) or self.natural.supports(language)

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None, word_pause: float = 0.0, voice: str | None = None,
    ) -> SynthesizedClip:
        return await self.for_job(language).synthesize(text, language, out_path, rate, sample_rate, usage=usage,
                                                       word_pause=word_pause, voice=voice)


def for_job(synthesizer: Synthesizer, language: str, asked: str) -> Synthesizer:
    """The synthesizer that speaks `language` for a job that asked for `asked`: a cloud voice as configured,
    offline the one `OfflineVoices.for_job` picks."""
    if isinstance(synthesizer, OfflineVoices):
        return synthesizer.for_job(language, asked)
    return synthesizer
