"""A speaker's voice sample for cloning: their cleanest stretches of the recording, joined (in the pool)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soundfile as sf

from service.audio import ffmpeg

SAMPLE_RATE = 24000
_GAP_SECONDS = 0.25


def pick_spans(own: Sequence[tuple[float, float]], others: Sequence[tuple[float, float]], *,
               max_seconds: float = 120.0, margin: float = 0.3) -> list[tuple[float, float]]:
    """The longest of a speaker's stretches (long stretches are uninterrupted speech), leaving out any that
    come within `margin` seconds of another speaker's, up to `max_seconds` in all, in time order."""
    clean = [(s, e) for s, e in own
             if not any(o_start - margin < e and s < o_end + margin for o_start, o_end in others)]
    chosen: list[tuple[float, float]] = []
    total = 0.0
    for start, end in sorted(clean, key=lambda span: span[0] - span[1]):
        if total >= max_seconds:
            break
        end = min(end, start + max_seconds - total)
        chosen.append((start, end))
        total += end - start
    return sorted(chosen)


def write_sample(source: str, spans: Sequence[tuple[float, float]], out_path: str) -> float:
    """The spans of `source` joined with short pauses into a mono 16-bit WAV; returns its speech seconds."""
    pieces: list[np.ndarray] = []
    gap = np.zeros(int(_GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    for start, end in spans:
        audio = np.frombuffer(ffmpeg.read_samples(source, rate=SAMPLE_RATE, start=start, seconds=end - start),
                              dtype=np.float32)
        pieces.extend([audio, gap])
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    sf.write(out_path, joined, SAMPLE_RATE, subtype="PCM_16")
    return round(float(sum(e - s for s, e in spans)), 3)
