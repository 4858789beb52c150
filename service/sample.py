"""A sample English voice recording and background bed, made on the spot with espeak-ng and numpy.

Used by `dubbing demo` when no files are given, and by the end-to-end tests.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_LINES = (
    (0.6, "Welcome to the automatic dubbing demo."),
    (4.2, "This recording was made by a speech synthesizer."),
    (8.4, "Every sentence is translated and spoken again."),
    (12.6, "Thank you for listening."),
)
RATE = 48000

_WHO = ("The old farmer", "My sister", "The young doctor", "Our teacher", "A tired traveller", "The baker")
_DID = ("opened", "painted", "repaired", "cleaned", "sold", "found")
_WHAT = ("the blue door", "a wooden table", "the kitchen window", "an old bicycle", "the garden gate")
_WHEN = ("this morning", "after lunch", "last week", "before the storm", "on Sunday")


def varied_lines(count: int, first: float = 0.6, every: float = 4.2) -> tuple[tuple[float, str], ...]:
    """`count` different sentences, one every `every` seconds: a recording long enough to act on while it is
    dubbed. Different, as real speech is: text that repeats itself makes Whisper decode each 30-second window
    at every fallback temperature (six times over) because it looks like a hallucination loop."""
    lines = []
    for i in range(count):  # each part moves on at every line, at its own pace
        words = (_WHO[i % 6], _DID[(5 * i + i // 6) % 6], _WHAT[2 * i % 5], _WHEN[(3 * i + i // 5) % 5])
        lines.append((round(first + every * i, 3), " ".join(words) + "."))
    return tuple(lines)


@dataclass(frozen=True)
class Sample:
    voice: Path
    background: Path
    speech: tuple[tuple[float, float], ...]  # where each line was placed, in seconds


def _speak(text: str, rate: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", tmp.name, text], check=True,
                       capture_output=True, timeout=60)
        audio, source_rate = soundfile.read(tmp.name, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    positions = np.arange(0, len(audio), source_rate / rate)
    resampled = np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    nonzero = np.flatnonzero(np.abs(resampled) > 1e-3)
    trimmed: np.ndarray = resampled[nonzero[0]: nonzero[-1] + 1] if len(nonzero) else resampled
    return trimmed


def make_sample(folder: Path, lines: tuple[tuple[float, str], ...] = SAMPLE_LINES,
                background_seconds: float | None = None) -> Sample:
    """Write `voice.wav` (mono) and `background.wav` (stereo music-like bed) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = [(start, _speak(text, RATE)) for start, text in lines]
    end = max(start + len(clip) / RATE for start, clip in clips) + 1.0
    total = background_seconds or end + 0.5
    voice = np.zeros(round(end * RATE), dtype=np.float32)
    speech = []
    for start, clip in clips:
        at = round(start * RATE)
        voice[at: at + len(clip)] += 0.6 * clip / max(float(np.abs(clip).max()), 1e-6)
        speech.append((start, start + len(clip) / RATE))
    voice_path = folder / "voice.wav"
    soundfile.write(voice_path, voice, RATE, subtype="PCM_16")

    t = np.arange(round(total * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)
    rng = np.random.default_rng(7)
    bed = 0.15 * chord * pulse + 0.01 * rng.standard_normal(len(t))
    stereo = np.stack([bed, np.roll(bed, 240)], axis=1).astype(np.float32)
    background_path = folder / "background.wav"
    soundfile.write(background_path, stereo, RATE, subtype="PCM_16")
    return Sample(voice_path, background_path, tuple(speech))
