"""Decode any input to a WAV at the working rate, streamed by ffmpeg (never via Python RAM)."""

from __future__ import annotations

import os

import soundfile as sf

from service.audio import ffmpeg
from service.audio.ffmpeg import AudioInfo
from service.errors import AudioError, ErrorCode

DEFAULT_SAMPLE_RATE = 48000


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
        raise AudioError(ErrorCode.AUDIO_UNDECODABLE, "The input file does not exist")
    args = ["-i", in_path, "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if channels is not None:
        args += ["-ac", str(channels)]
    with ffmpeg.atomic_output(out_path) as tmp:
        args += [
            "-af", f"aresample={sample_rate}:resampler=soxr:precision=28",
            "-ar", str(sample_rate),
            "-c:a", codec, "-rf64", "auto", "-f", "wav", tmp,
        ]  # fmt: skip
        try:
            ffmpeg.run(args)
            info = ffmpeg.audio_info(tmp)
        except AudioError as exc:
            raise AudioError(ErrorCode.AUDIO_UNDECODABLE, f"ffmpeg could not decode the audio: {exc.message}") from exc
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(ErrorCode.AUDIO_UNDECODABLE, "The decoded audio is unreadable") from exc
        if info.frames == 0:
            raise AudioError(ErrorCode.AUDIO_UNDECODABLE, "The audio decoded to zero length")
    return info
