"""Pitch-preserving time-stretch of a synthesized clip via ffmpeg's ``rubberband`` filter."""

from __future__ import annotations

import math

from service.audio import ffmpeg
from service.audio.decode import DEFAULT_SAMPLE_RATE
from service.errors import AudioError


def time_stretch(in_path: str, out_path: str, factor: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> float:
    """Make ``in_path`` ``factor`` times faster (``factor > 1`` shortens), keep pitch; return seconds.

    Output is a float32 WAV at ``sample_rate``. ``factor == 1`` is a plain
    copy/resample so callers need not special-case it.
    """
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"stretch factor must be finite and positive, got {factor}")
    filters = [f"aresample={sample_rate}:resampler=soxr"]
    if abs(factor - 1.0) > 1e-6:
        # pitchq=quality and smooth transients suit speech; formant shift is irrelevant at pitch=1.
        filters.append(f"rubberband=tempo={factor:.6f}:transients=mixed:pitchq=quality")
    with ffmpeg.atomic_output(out_path) as tmp:
        try:
            ffmpeg.run(["-i", in_path, "-map", "0:a:0", "-af", ",".join(filters),
                        "-ar", str(sample_rate), "-c:a", "pcm_f32le", "-f", "wav", tmp])
        except AudioError as exc:
            raise AudioError("stretch_failed", f"Time-stretching a clip by {factor:.3f} failed: {exc.message}") from exc
        duration = ffmpeg.audio_info(tmp).duration
    return duration
