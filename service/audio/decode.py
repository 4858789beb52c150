"""Decode any input to a WAV at the working rate, streamed by ffmpeg (never via Python RAM).

Also holds the small ffmpeg runner the other audio modules share.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import soundfile as sf

DEFAULT_SAMPLE_RATE = 48000
FFMPEG = os.environ.get("DUBBING_FFMPEG", "ffmpeg")
_STDERR_TAIL = 2000


class AudioDecodeError(Exception):
    """ffmpeg could not turn the input into usable audio (bad file, no audio, zero length)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FfmpegError(RuntimeError):
    """An ffmpeg command failed; carries the tail of its stderr for the logs."""


@dataclass(frozen=True)
class AudioInfo:
    """What a decoded file holds; small enough to cross a process boundary."""

    duration: float
    sample_rate: int
    channels: int
    frames: int


def run_ffmpeg(args: Sequence[str], *, timeout: float | None = None) -> str:
    """Run ffmpeg with ``args`` (after the common flags); return stderr, raise `FfmpegError` on failure."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-nostats", "-y", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise FfmpegError(f"ffmpeg executable not found: {FFMPEG}") from exc
    if proc.returncode != 0:
        raise FfmpegError(f"ffmpeg exited with {proc.returncode}: {proc.stderr[-_STDERR_TAIL:].strip()}")
    return proc.stderr


def audio_info(path: str) -> AudioInfo:
    """Header facts of a file libsndfile can read (WAV/FLAC/...)."""
    info = sf.info(path)
    return AudioInfo(
        duration=info.frames / info.samplerate if info.samplerate else 0.0,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )


def partial_path(out_path: str) -> str:
    """Sibling temp name so a crash never leaves a half-written file under the final name."""
    directory, name = os.path.split(out_path)
    return os.path.join(directory, f".{name}.{os.getpid()}.part")


def decode_to_wav(
    in_path: str,
    out_path: str,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    channels: int | None = None,
    subtype: str = "FLOAT",
) -> AudioInfo:
    """Decode the first audio stream of ``in_path`` to a WAV at ``sample_rate``.

    ``channels=None`` keeps the source layout. ``subtype`` is ``"FLOAT"``
    (32-bit float, default: no clipping of hot sources) or ``"PCM_24"``.
    RF64 is used automatically if the file would pass 4 GiB.
    """
    codec = {"FLOAT": "pcm_f32le", "PCM_24": "pcm_s24le", "PCM_16": "pcm_s16le"}.get(subtype)
    if codec is None:
        raise ValueError(f"unsupported subtype {subtype!r}")
    if not os.path.exists(in_path):
        raise AudioDecodeError(f"input does not exist: {in_path}")
    tmp = partial_path(out_path)
    args = ["-i", in_path, "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if channels is not None:
        args += ["-ac", str(channels)]
    args += [
        "-af", f"aresample={sample_rate}:resampler=soxr:precision=28",
        "-ar", str(sample_rate),
        "-c:a", codec, "-rf64", "auto", "-f", "wav", tmp,
    ]  # fmt: skip
    try:
        run_ffmpeg(args)
        info = audio_info(tmp)
    except FfmpegError as exc:
        _remove_quietly(tmp)
        raise AudioDecodeError(f"could not decode {in_path}: {exc}") from exc
    except (sf.LibsndfileError, RuntimeError) as exc:
        _remove_quietly(tmp)
        raise AudioDecodeError(f"decoded output of {in_path} is unreadable: {exc}") from exc
    if info.frames == 0:
        _remove_quietly(tmp)
        raise AudioDecodeError(f"{in_path} decoded to zero-length audio")
    os.replace(tmp, out_path)
    return info


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
