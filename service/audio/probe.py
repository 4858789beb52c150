"""Probe an uploaded file: does it decode as audio, how long is it, and its sha256.

Runs in the process pool (it reads the whole file and may start ffprobe).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from service.audio import ffmpeg


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    duration_seconds: float
    sample_rate: int
    channels: int
    sha256: str
    reason: str = ""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def probe(path: str) -> ProbeResult:
    digest = sha256_of(path)
    try:
        import soundfile

        info = soundfile.info(path)
        duration, rate, channels = float(info.duration), int(info.samplerate), int(info.channels)
    except Exception:
        result = ffmpeg.probe(path)
        if isinstance(result, str):
            return ProbeResult(False, 0.0, 0, 0, digest, result)
        duration, rate, channels = result
    if duration <= 0 or rate <= 0:
        return ProbeResult(False, duration, rate, channels, digest, "the audio has no samples")
    return ProbeResult(True, duration, rate, channels, digest)
