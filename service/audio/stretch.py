"""Pitch-preserving time-stretch of a synthesized clip via ffmpeg's ``rubberband`` filter."""

from __future__ import annotations

import math
import os

from service.audio.decode import DEFAULT_SAMPLE_RATE, FfmpegError, audio_info, partial_path, run_ffmpeg


class StretchError(RuntimeError):
    """ffmpeg/rubberband failed on a clip."""


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
    tmp = partial_path(out_path)
    try:
        run_ffmpeg(
            [
                "-i", in_path, "-map", "0:a:0", "-af", ",".join(filters),
                "-ar", str(sample_rate), "-c:a", "pcm_f32le", "-f", "wav", tmp,
            ]
        )  # fmt: skip
        info = audio_info(tmp)
    except FfmpegError as exc:
        _remove_quietly(tmp)
        raise StretchError(f"time-stretch of {in_path} by {factor} failed: {exc}") from exc
    os.replace(tmp, out_path)
    return info.duration


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
