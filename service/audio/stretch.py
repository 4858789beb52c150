"""Pitch-preserving time-stretch of a synthesized clip: librubberband in-process (`rubberband.py`), or ffmpeg's
``rubberband`` filter where the library cannot be loaded."""

from __future__ import annotations

import math

import numpy as np
import soundfile as sf

from service.audio import ffmpeg, rubberband
from service.audio.decode import DEFAULT_SAMPLE_RATE
from service.errors import AudioError, ErrorCode

# The synthesizers speak at 22.05 kHz (espeak-ng) and 24 kHz (Deepgram Aura): their clips hold nothing above
# 12 kHz, so the stretch runs at 24 kHz (a quarter of the work at 48 kHz, whose larger FFT windows cost 4x)
# and soxr brings the result back to the working rate.
STRETCH_RATE = 24000


def time_stretch(in_path: str, out_path: str, factor: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> float:
    """Make ``in_path`` ``factor`` times faster (``factor > 1`` shortens), keep pitch; return seconds.

    Output is a mono float32 WAV at ``sample_rate``. ``factor == 1`` is a plain
    copy/resample so callers need not special-case it.
    """
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"stretch factor must be finite and positive, got {factor}")
    if rubberband.available():
        return _in_process(in_path, out_path, factor, sample_rate)
    return _by_ffmpeg(in_path, out_path, factor, sample_rate)


def _in_process(in_path: str, out_path: str, factor: float, sample_rate: int) -> float:
    import soxr

    try:
        samples, rate = sf.read(in_path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioError(ErrorCode.STRETCH_FAILED, f"The clip {in_path} is unreadable") from exc
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if abs(factor - 1.0) > 1e-6:
        work_rate = min(STRETCH_RATE, rate)
        if rate != work_rate:
            mono = soxr.resample(mono, rate, work_rate, quality="HQ").astype(np.float32)
        mono, rate = rubberband.stretch(mono, work_rate, factor), work_rate
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    with ffmpeg.atomic_output(out_path) as tmp:
        sf.write(tmp, mono, sample_rate, subtype="FLOAT", format="WAV")
    return len(mono) / sample_rate


def _by_ffmpeg(in_path: str, out_path: str, factor: float, sample_rate: int) -> float:
    filters = [f"aresample={sample_rate}:resampler=soxr"]
    if abs(factor - 1.0) > 1e-6:
        # pitchq=quality and smooth transients suit speech; formant shift is irrelevant at pitch=1.
        filters.append(f"rubberband=tempo={factor:.6f}:transients=mixed:pitchq=quality")
    with ffmpeg.atomic_output(out_path) as tmp:
        try:
            ffmpeg.run(["-i", in_path, "-map", "0:a:0", "-ac", "1", "-af", ",".join(filters),
                        "-ar", str(sample_rate), "-c:a", "pcm_f32le", "-f", "wav", tmp])
        except AudioError as exc:
            raise AudioError(ErrorCode.STRETCH_FAILED,
                             f"Time-stretching a clip by {factor:.3f} failed: {exc.message}") from exc
        duration = ffmpeg.audio_info(tmp).duration
    return duration
