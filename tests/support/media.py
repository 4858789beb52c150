"""Generated media for the media-job tests: a test-pattern picture, real read speech (LibriVox, as
`speech.py`) and a generated music-like bed mixed under it at a chosen level, in MP4, MOV, WebM or MKV."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile

from tests.support.speech import LIBRIVOX

RATE = 48_000
# Two short LibriVox sentences (about 6.5 s with the pauses around them).
SENTENCES = ("sense_and_sensibility_01_austen_64kb-0880.wav", "sense_and_sensibility_01_austen_64kb-0930.wav")
LEAD_SECONDS = 0.8
PAUSE_SECONDS = 0.7

# Container: ffmpeg muxer, video codec options, audio codec options, content type.
FORMATS = {
    "mp4": ("mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"], "video/mp4"),
    "mov": ("mov", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"],
            "video/quicktime"),
    "webm": ("webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "150k"],
             ["-c:a", "libopus"], "video/webm"),
    "mkv": ("matroska", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "flac"],
            "video/x-matroska"),
}


@dataclass(frozen=True)
class MixedSoundtrack:
    voice: npt.NDArray[np.float32]
    bed: npt.NDArray[np.float32]
    speech: list[tuple[float, float]]  # where the sentences are, in seconds

    @property
    def mix(self) -> npt.NDArray[np.float32]:
        return (self.voice + self.bed).astype(np.float32)

    @property
    def seconds(self) -> float:
        return len(self.voice) / RATE


def music_bed(seconds: float, seed: int = 3) -> npt.NDArray[np.float32]:
    """A music-like bed: plucked notes every half second, a low drone, a tick between notes."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    notes = (110.0, 146.8, 164.8, 196.0, 220.0, 261.6, 293.7, 329.6)
    bed = 0.4 * np.sin(2 * np.pi * 55 * np.arange(n) / RATE)
    for k in range(int(seconds / 0.5)):
        start, freq = int(k * 0.5 * RATE), notes[rng.integers(len(notes))]
        t = np.arange(min(int(1.5 * RATE), n - start)) / RATE
        bed[start:start + len(t)] += np.sin(2 * np.pi * freq * t) * np.exp(-3 * t)
        tick = int((k * 0.5 + 0.25) * RATE)
        length = min(int(0.05 * RATE), max(n - tick, 0))
        bed[tick:tick + length] += 0.3 * rng.standard_normal(length) * np.exp(-np.arange(length) / RATE * 80)
    return bed.astype(np.float32)


def rms(x: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def soundtrack(speech_over_bed_db: float, sentences: tuple[str, ...] = SENTENCES) -> MixedSoundtrack:
    """The sentences with pauses, and the bed `speech_over_bed_db` below the speech (RMS over the speech)."""
    import soxr

    pieces: list[npt.NDArray[np.float32]] = [np.zeros(int(LEAD_SECONDS * RATE), dtype=np.float32)]
    speech = []
    for name in sentences:
        audio, rate = soundfile.read(LIBRIVOX / name, dtype="float32")
        audio = soxr.resample(audio, rate, RATE).astype(np.float32)
        start = sum(len(p) for p in pieces) / RATE
        speech.append((start, start + len(audio) / RATE))
        pieces += [audio, np.zeros(int(PAUSE_SECONDS * RATE), dtype=np.float32)]
    voice = 0.5 * np.concatenate(pieces) / max(float(np.max(np.abs(np.concatenate(pieces)))), 1e-6)
    bed = music_bed(len(voice) / RATE)
    spoken = np.concatenate([voice[int(s * RATE):int(e * RATE)] for s, e in speech])
    bed *= rms(spoken) / rms(bed) / 10 ** (speech_over_bed_db / 20)
    return MixedSoundtrack(voice.astype(np.float32), bed.astype(np.float32), speech)


def write_media(track: MixedSoundtrack, out: Path, container: str | None, size: str = "160x120") -> str:
    """`track` as a file: a video in `container` (test pattern at 25 fps), or a WAV when None. Its content type."""
    wav = out.with_suffix(".soundtrack.wav")
    soundfile.write(wav, np.stack([track.mix, track.mix], axis=1), RATE, subtype="PCM_16")
    if container is None:
        wav.rename(out)
        return "audio/wav"
    muxer, video, audio, content_type = FORMATS[container]
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={track.seconds:.3f}",
                    "-i", str(wav), "-map", "0:v", "-map", "1:a", *video, *audio, "-shortest", "-f", muxer, str(out)],
                   check=True)
    wav.unlink()
    return content_type


def probe_streams(path: Path) -> dict[str, Any]:
    """ffprobe's view of a file: its format and streams, with packets counted (a video's frame count)."""
    import json

    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                          "format=format_name,duration:stream=index,codec_type,codec_name,nb_read_packets,duration,"
                          "avg_frame_rate:stream_tags=language,DURATION:stream_disposition=default",
                          "-of", "json", str(path)], check=True, capture_output=True).stdout
    return dict(json.loads(out))


def stream_seconds(stream: dict[str, Any]) -> float:
    """A stream's length as its container records it (Matroska keeps it as a `DURATION` tag)."""
    if stream.get("duration") not in (None, "N/A"):
        return float(stream["duration"])
    hours, minutes, seconds = stream["tags"]["DURATION"].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def audio_track(path: Path, index: int, out: Path) -> npt.NDArray[np.float32]:
    """The `index`th audio track of a file, mono at RATE."""
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(path),
                    "-map", f"0:a:{index}", "-ac", "1", "-ar", str(RATE), str(out)], check=True)
    samples, _ = soundfile.read(out, dtype="float32")
    return np.asarray(samples, dtype=np.float32)
