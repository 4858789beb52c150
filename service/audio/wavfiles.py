"""Float WAV files the audio code writes, and getting any input to the working rate first."""

from __future__ import annotations

import os

import soundfile as sf

from service.audio import ffmpeg
from service.audio.decode import decode_to_wav

_WAV_LIMIT_BYTES = 0xFFFF_FFFF - 1_000_000
_IN_MEMORY_SECONDS = 60.0


def open_for_write(path: str, sample_rate: int, channels: int, frames: int) -> sf.SoundFile:
    """Float WAV, switching to RF64 when a plain WAV header could not describe the size."""
    fmt = "RF64" if frames * channels * 4 > _WAV_LIMIT_BYTES else "WAV"
    return sf.SoundFile(path, mode="w", samplerate=sample_rate, channels=channels, subtype="FLOAT", format=fmt)


def at_rate(path: str, sample_rate: int, work_dir: str, name: str) -> str:
    """Path of a WAV at ``sample_rate`` holding ``path``'s audio (the original if already fine).

    A clip libsndfile reads is resampled in memory by soxr (a clip is seconds long; starting ffmpeg for it
    cost more than the resampling); anything longer or in another format is streamed through ffmpeg.
    """
    out = os.path.join(work_dir, f"{name}.wav")
    try:
        info = ffmpeg.audio_info(path)
        if info.sample_rate == sample_rate and info.frames > 0:
            return path
        if 0 < info.duration <= _IN_MEMORY_SECONDS:
            import soxr

            samples, rate = sf.read(path, dtype="float32", always_2d=True)
            resampled = soxr.resample(samples, rate, sample_rate, quality="HQ")
            with ffmpeg.atomic_output(out) as tmp:
                sf.write(tmp, resampled, sample_rate, subtype="FLOAT", format="WAV")
            return out
    except (sf.LibsndfileError, RuntimeError):
        pass
    decode_to_wav(path, out, sample_rate=sample_rate)
    return out


def to_pcm16(path: str, out_path: str) -> float:
    """`path` (a float WAV) as 16-bit PCM at its rate, for an upload half the size; returns its seconds."""
    with sf.SoundFile(path) as source, ffmpeg.atomic_output(out_path) as tmp, \
            sf.SoundFile(tmp, "w", source.samplerate, source.channels, "PCM_16", format="WAV") as sink:
        for block in source.blocks(blocksize=source.samplerate * 10, dtype="float32"):
            sink.write(block)
        return float(source.frames / source.samplerate)
