"""A synthesized line as the dubbing stage keeps it: mono 16-bit WAV at the working rate, silence trimmed.

Both synthesizers end here: espeak-ng speaks into memory (`engines/offline/espeak_lib.py`), Deepgram Aura
streams WAV parts to disk that are joined here. Trimming and resampling a clip of a few seconds in numpy and
soxr takes a millisecond or two; one ffmpeg process a clip cost ~60 ms of CPU, 40 % of cloud mode's CPU.
Runs in a process-pool worker (or a thread, for a caller without one) on file paths.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service import scratch
from service.errors import EngineError, ErrorCode

# Leading and trailing samples quieter than this (-50 dBFS) are silence; this much of it is kept at each end.
SILENCE = 10 ** (-50 / 20)
KEEP_SECONDS = 0.02
# No clip leaves a synthesizer above this true peak: under the -1 dBTP target, with room for 16-bit rounding.
TRUE_PEAK_CEILING_DBTP = -1.5
_OVERSAMPLE = 4  # true peak: the peak of the signal oversampled 4x (ITU-R BS.1770)


def trimmed(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float32]:
    """`samples` without the silence before the first and after the last sound (20 ms of it kept)."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE)
    if loud.size == 0:
        return samples[:0]
    keep = round(KEEP_SECONDS * rate)
    return samples[max(int(loud[0]) - keep, 0): min(int(loud[-1]) + 1 + keep, samples.size)]


def true_peak(samples: npt.NDArray[np.float32], rate: int) -> float:
    """The true peak (linear): the highest magnitude of the signal oversampled 4x."""
    import soxr

    if samples.size == 0:
        return 0.0
    over = soxr.resample(samples.astype(np.float64), rate, rate * _OVERSAMPLE)
    return float(max(np.max(np.abs(samples)), np.max(np.abs(over))))


def under_ceiling(samples: npt.NDArray[np.float32], rate: int,
                  ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP) -> npt.NDArray[np.float32]:
    """`samples` scaled down, when they must be, so their true peak is at most `ceiling_dbtp`."""
    peak = true_peak(samples, rate)
    ceiling = 10 ** (ceiling_dbtp / 20)
    return (samples * (ceiling / peak)).astype(np.float32) if peak > ceiling else samples


def write_clip(samples: npt.NDArray[np.float32], rate: int, sample_rate: int, out_path: str) -> float:
    """Resample to `sample_rate`, hold the true peak under the ceiling (a synthesizer's clip never clips), write
    a mono 16-bit WAV atomically; return its duration in seconds."""
    import soundfile
    import soxr

    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    samples = under_ceiling(np.asarray(samples, dtype=np.float32), sample_rate)
    tmp = scratch.partial_path(out_path)
    try:
        soundfile.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return round(len(samples) / sample_rate, 4)


def read_streamed_wav(path: str) -> tuple[npt.NDArray[np.float32], int]:
    """Mono float samples and rate of a 16-bit PCM WAV, whose size fields may be placeholders.

    A WAV streamed as it is synthesized cannot know its length when the header goes out: its RIFF and data
    sizes may be 0 or 0xFFFFFFFF. The data chunk runs to the end of the file then.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "The synthesized audio is not a WAV file")
    channels = rate = bits = 0
    offset = 12
    while offset + 8 <= len(raw):
        chunk, size = raw[offset: offset + 4], struct.unpack_from("<I", raw, offset + 4)[0]
        body = offset + 8
        if chunk == b"fmt " and size >= 16:
            _format, channels, rate, _rate_bytes, _align, bits = struct.unpack_from("<HHIIHH", raw, body)
        elif chunk == b"data":
            end = body + size if 0 < size <= len(raw) - body else len(raw)
            if bits != 16 or channels < 1:
                raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "The synthesized audio is not 16-bit PCM")
            usable = (end - body) // (2 * channels) * 2 * channels
            pcm = np.frombuffer(raw, dtype="<i2", count=usable // 2, offset=body).reshape(-1, channels)
            return (pcm.mean(axis=1, dtype=np.float32) / 32768.0).astype(np.float32), int(rate)
        offset = body + size + (size & 1)
    raise EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "The synthesized audio has no data")


def join_trimmed(parts: Sequence[str], out_path: str, sample_rate: int) -> float:
    """Join WAV parts of one line, trim the ends, write it at `sample_rate`; return its duration."""
    pieces = [read_streamed_wav(part) for part in parts]
    rate = pieces[0][1]
    joined = np.concatenate([p if r == rate else _resampled(p, r, rate) for p, r in pieces])
    speech = trimmed(joined, rate)
    if speech.size == 0:
        raise EngineError(ErrorCode.ENGINE_FAILED, "The synthesized line is silent")
    return write_clip(speech, rate, sample_rate, out_path)


def _resampled(samples: npt.NDArray[np.float32], rate: int, to: int) -> npt.NDArray[np.float32]:
    import soxr

    return np.asarray(soxr.resample(samples, rate, to), dtype=np.float32)
