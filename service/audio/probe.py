"""Probe an uploaded file: does it decode as audio, how long is it, and its sha256.

Runs in the process pool (it reads the whole file and may start ffprobe).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass


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


def _ffprobe(path: str) -> tuple[float, int, int] | str:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate,channels,duration:format=duration", "-of", "json", path],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["ffprobe failed"])[-1][:300]
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams") or []
    if not streams:
        return "no audio stream"
    stream = streams[0]
    duration = stream.get("duration") or info.get("format", {}).get("duration")
    if duration in (None, "N/A"):
        return "unknown duration"
    return float(duration), int(stream.get("sample_rate", 0)), int(stream.get("channels", 0))


def probe(path: str) -> ProbeResult:
    digest = sha256_of(path)
    try:
        import soundfile

        info = soundfile.info(path)
        duration, rate, channels = float(info.duration), int(info.samplerate), int(info.channels)
    except Exception:
        result = _ffprobe(path)
        if isinstance(result, str):
            return ProbeResult(False, 0.0, 0, 0, digest, result)
        duration, rate, channels = result
    if duration <= 0 or rate <= 0:
        return ProbeResult(False, duration, rate, channels, digest, "the audio has no samples")
    return ProbeResult(True, duration, rate, channels, digest)
