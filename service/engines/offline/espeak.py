"""Offline speech synthesis with espeak-ng, resampled and silence-trimmed by ffmpeg.

espeak-ng pads clips with silence; the dubbing timeline needs honest speech durations, so
leading and trailing silence is trimmed before the duration is measured.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from concurrent.futures import Executor

import soundfile as sf

from service.audio import ffmpeg
from service.engines import process
from service.engines.offline import espeak_lib
from service.engines.protocols import Usage, check_synthesis_input
from service.engines.types import SynthesizedClip
from service.errors import EngineError, ErrorCode
from service.workpool import cpu_pool

BASE_WPM = 175
MIN_WPM, MAX_WPM = 80, 900  # below 80 espeak-ng clamps; above 450 it speeds up with libsonic
# Preferred espeak-ng voice per ISO 639-1 code; anything else tries the code itself.
VOICES = {
    "en": "en-us",
    "es": "es",
    "fr": "fr-fr",
    "de": "de",
    "it": "it",
    "pt": "pt",
    "ca": "ca",
    "nl": "nl",
    "eo": "eo",
    "ro": "ro",
    "pl": "pl",
    "ru": "ru",
    "sv": "sv",
    "da": "da",
    "nb": "nb",
    "no": "nb",
    "fi": "fi",
    "cs": "cs",
    "el": "el",
    "tr": "tr",
    "eu": "eu",
    "an": "an",
    "gl": "gl",
}


def list_voices(binary: str = "espeak-ng") -> frozenset[str]:
    """Language names espeak-ng offers (blocking; call once at startup)."""
    try:
        out = subprocess.run([binary, "--voices"], capture_output=True, text=True, check=True, timeout=30).stdout
    except FileNotFoundError as exc:
        raise EngineError(ErrorCode.ENGINE_MISSING, f"{binary} is not installed") from exc
    except (subprocess.SubprocessError, OSError) as exc:
        raise EngineError(ErrorCode.ENGINE_FAILED, f"{binary} --voices failed: {exc}") from exc
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 2:
            names.add(cols[1].lower())
    return frozenset(names)


def split_voice(voice: str) -> tuple[str, int]:
    """An espeak-ng voice id as this engine takes it, `name[+variant][@pitch]` (`es+m3@40`), as the voice name
    and its pitch (0-100; 50, espeak-ng's own, when not given). A speaker's voice is one of these."""
    name, _, pitch = voice.partition("@")
    try:
        return name, max(0, min(100, int(pitch))) if pitch else espeak_lib.DEFAULT_PITCH
    except ValueError:
        raise EngineError(ErrorCode.BAD_INPUT, f"{voice!r} is not an espeak-ng voice (name+variant@pitch)") from None


def wpm_for(rate: float) -> int:
    return max(MIN_WPM, min(MAX_WPM, round(BASE_WPM * rate)))


# espeak-ng's word gap is counted in units of about 13 ms of pause at its default 175 words a minute
# (measured), and scales with the speed.
_WORD_GAP_SECONDS = 0.013
MAX_WORD_GAP = 40


def word_gap_for(pause_seconds: float, wpm: int) -> int:
    """espeak-ng's `-g` for a pause of `pause_seconds` between words at `wpm`."""
    if pause_seconds <= 0:
        return 0
    return max(0, min(MAX_WORD_GAP, round(pause_seconds / (_WORD_GAP_SECONDS * BASE_WPM / wpm))))


class EspeakSynthesizer:
    """Synthesizer over espeak-ng voices; `rate` maps to words per minute.

    Given a process pool, lines are spoken in its workers by libespeak-ng itself (`espeak_lib`): no process
    per line. Without one (or without the library), by the `espeak-ng` command and ffmpeg.
    """

    name = "espeak-ng"
    pauses_between_words = True

    def __init__(
        self,
        voices: frozenset[str] | None = None,
        binary: str = "espeak-ng",
        timeout: float = 60.0,
        executor: Executor | None = None,
    ) -> None:
        self._binary = binary
        self._timeout = timeout
        self._voices = voices if voices is not None else list_voices(binary)
        self._executor = executor if executor is not None and espeak_lib.available() else None

    def voice_for(self, language: str) -> str:
        code = language.strip().lower().replace("_", "-")
        if code in self._voices:
            return VOICES.get(code, code)
        base = code.split("-")[0]
        return VOICES.get(base, base)

    def supports(self, language: str) -> bool:
        return self.voice_for(language) in self._voices

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None, word_pause: float = 0.0, voice: str | None = None,
    ) -> SynthesizedClip:
        check_synthesis_input(self, "espeak-ng", text, language, rate, sample_rate)
        spoken = " ".join(text.split())
        wpm = wpm_for(rate)
        gap = word_gap_for(word_pause, wpm)
        voice, pitch = split_voice(voice or self.voice_for(language))
        if self._executor is not None:
            duration = await cpu_pool.run(self._executor, espeak_lib.synthesize_file, spoken,
                                          voice, wpm, sample_rate, out_path, gap, pitch)
            return SynthesizedClip(path=out_path, duration=duration, rate=wpm / BASE_WPM)
        raw = f"{out_path}.{uuid.uuid4().hex}.espeak.wav"  # beside the output, unique per call
        try:
            await process.run(
                [self._binary, "-v", voice, "-s", str(wpm), "-g", str(gap), "-p", str(pitch), "-w", raw, "--stdin"],
                spoken.encode("utf-8"),
                self._timeout,
            )
            with ffmpeg.atomic_output(out_path) as tmp:
                await ffmpeg.run_async(["-i", raw, "-af", ffmpeg.TRIM_SILENCE, "-ac", "1", "-ar", str(sample_rate),
                                        "-c:a", "pcm_s16le", "-f", "wav", tmp], time_limit=self._timeout)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(raw)
        duration = sf.info(out_path).duration  # header read only: cheap enough for the loop
        return SynthesizedClip(path=out_path, duration=round(float(duration), 4), rate=wpm / BASE_WPM)
