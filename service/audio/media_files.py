"""A media job's files: the soundtrack out of the upload, the dubbed window laid into the original, and the dubbed
video put together again (the picture copied, never re-encoded).

Every ffmpeg that opens the upload does so as `media_probe.SAFE_INPUT` says (the file protocol only, allow-listed
demuxers). Functions take paths and plain values and run in the process pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf

from service.audio import ffmpeg, wavfiles
from service.audio.media_probe import SAFE_INPUT
from service.errors import Cancelled
from service.workpool import cancellation

# The dub fades in and out over this long at the window's edges (the original fades the other way).
CROSSFADE_SECONDS = 0.05
_BLOCK_SECONDS = 10.0

# Per container: its ffmpeg muxer, the dubbed track's codec (what players expect there: AAC in MP4/MOV, Opus in
# WebM and Matroska) with its encoder options and the file it is encoded into beforehand, the caption codec, the
# original track's codecs that it may carry as they are (others are encoded like the dub), and its content type.
@dataclass(frozen=True)
class Container:
    muxer: str
    extension: str
    content_type: str
    audio_codec: tuple[str, ...]
    subtitle_codec: str
    copyable_audio: frozenset[str]

    @property
    def dub_codec(self) -> str:
        return "opus" if self.audio_codec[0] == "libopus" else self.audio_codec[0]

    @property
    def dub_track_format(self) -> tuple[str, str]:
        """The muxer and extension the dub is encoded into ahead of the remux: one that keeps the encoder's
        priming (an MP4 edit list, Ogg Opus's pre-skip), so that the copied track starts exactly with the video."""
        return ("ipod", ".m4a") if self.dub_codec == "aac" else ("opus", ".opus")


_AAC = ("aac", "-b:a", "192k")
_OPUS = ("libopus", "-b:a", "128k")
CONTAINERS = {
    "mp4": Container("mp4", ".mp4", "video/mp4", _AAC, "mov_text",
                     frozenset({"aac", "mp3", "alac", "ac3", "eac3", "flac"})),
    "mov": Container("mov", ".mov", "video/quicktime", _AAC, "mov_text",
                     frozenset({"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le"})),
    "webm": Container("webm", ".webm", "video/webm", _OPUS, "webvtt", frozenset({"opus", "vorbis"})),
    # Opus, not AAC: ffmpeg's Matroska muxer keeps no AAC priming, so an AAC dub would start 1024 samples (21 ms)
    # late; Opus's pre-skip is kept (CodecDelay).
    "mkv": Container("matroska", ".mkv", "video/x-matroska", _OPUS, "webvtt",
                     frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"})),
}


def extract_soundtrack(media: str, out_path: str, sample_rate: int, channels: int | None = None) -> float:
    """The upload's first audio stream as a float WAV at `sample_rate` (`channels` None: as it is); its seconds."""
    args = [*SAFE_INPUT, "-i", media, "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if channels is not None:
        args += ["-ac", str(channels)]
    with ffmpeg.atomic_output(out_path) as tmp:
        ffmpeg.run([*args, "-af", f"aresample={sample_rate}:resampler=soxr:precision=28", "-ar", str(sample_rate),
                    "-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", tmp])
    return float(sf.info(out_path).duration)


def window_gain(start_frame: int, count: int, rate: int, start: float, end: float,
                total_seconds: float) -> npt.NDArray[np.float32]:
    """How much of the dub plays at each of `count` frames from `start_frame`: 1 inside [start, end], 0 outside,
    with linear crossfades of CROSSFADE_SECONDS centred on the edges (none at the file's own ends)."""
    t = (start_frame + np.arange(count)) / rate
    half = CROSSFADE_SECONDS / 2
    rising = np.ones(count) if start <= 0 else np.clip((t - (start - half)) / CROSSFADE_SECONDS, 0.0, 1.0)
    falling = (np.ones(count) if end >= total_seconds - CROSSFADE_SECONDS  # the container's length may differ a bit
               else np.clip(((end + half) - t) / CROSSFADE_SECONDS, 0.0, 1.0))
    return np.minimum(rising, falling).astype(np.float32)


def windowed_bed(original: str, stem: str | None, start: float, end: float, out_path: str) -> float:
    """The bed the dub is mixed over: the separated background (every channel; silence when `stem` is None, for
    `background: drop`) inside [start, end], the original soundtrack outside, crossfaded at the edges. Outside the
    window there is no dubbed voice, so the mix passes the original through there. Returns the duration."""
    with sf.SoundFile(original) as source:
        rate, channels, total = source.samplerate, source.channels, source.frames
        block = int(_BLOCK_SECONDS * rate)
        stem_file = sf.SoundFile(stem) if stem is not None else None
        try:
            if stem_file is not None and stem_file.samplerate != rate:
                raise ValueError("the stem and the original must share a rate")
            with ffmpeg.atomic_output(out_path) as tmp, wavfiles.open_for_write(tmp, rate, channels, total) as sink:
                for first in range(0, total, block):
                    if cancellation.requested():
                        raise Cancelled("cancelled")
                    orig = source.read(block, dtype="float32", always_2d=True)
                    gain = window_gain(first, len(orig), rate, start, end, total / rate)[:, None]
                    inside = np.zeros_like(orig)
                    if stem_file is not None:
                        piece = stem_file.read(len(orig), dtype="float32", always_2d=True)
                        inside[: len(piece)] = piece[:, :1]  # mono stem, in every channel
                    sink.write(orig * (1.0 - gain) + inside * gain)
        finally:
            if stem_file is not None:
                stem_file.close()
    return float(total / rate)


@dataclass(frozen=True)
class VideoTracks:
    """What goes into the dubbed video besides the picture."""

    dubbed_audio: str  # the dub: `encode_dub_track`'s file (copied), or any audio file (encoded while muxing)
    captions_vtt: str
    target_language: str  # ISO 639-2
    source_language: str  # ISO 639-2
    original_audio_codec: str
    dubbed_codec: str = ""  # the codec of `dubbed_audio`: copied when it is the container's dub codec


def dub_track_name(container: str) -> str:
    return "dub-track" + CONTAINERS[container].dub_track_format[1]


def encode_dub_track(master: str, container: str, out_path: str) -> str:
    """The dubbed master encoded as the container's dub track (AAC 192 kbit/s, or Opus 128 kbit/s), done before
    the remux and beside other work, so that the remux only copies streams. Returns the codec."""
    spec = CONTAINERS[container]
    muxer, _ = spec.dub_track_format
    with ffmpeg.atomic_output(out_path) as tmp:
        ffmpeg.run(["-i", master, "-map", "0:a:0", "-c:a", *spec.audio_codec, "-f", muxer, tmp])
    return spec.dub_codec


def mux_video(media: str, tracks: VideoTracks, container: str, out_path: str) -> None:
    """The upload's picture (copied), the dub as the first and default audio track, the original soundtrack
    second, the captions as a subtitle track; in the upload's own container family. With the dub already in the
    container's codec and an original the container takes as it is, nothing is encoded (only the captions are
    converted): the remux reads and writes the file once (twice for MP4/MOV's `+faststart`)."""
    spec = CONTAINERS[container]
    original_codec = ["copy"] if tracks.original_audio_codec in spec.copyable_audio else list(spec.audio_codec)
    dubbed_codec = ["copy"] if tracks.dubbed_codec == spec.dub_codec else list(spec.audio_codec)
    args = [
        *SAFE_INPUT, "-i", media, "-i", tracks.dubbed_audio, "-i", tracks.captions_vtt,
        "-map", "0:v:0", "-map", "1:a:0", "-map", "0:a:0", "-map", "2:s:0",
        "-c:v", "copy", "-c:a:0", *dubbed_codec, "-c:a:1", *original_codec,
        "-c:s", spec.subtitle_codec,
        "-metadata:s:a:0", f"language={tracks.target_language}", "-disposition:a:0", "default",
        "-metadata:s:a:1", f"language={tracks.source_language}", "-disposition:a:1", "0",
        "-metadata:s:s:0", f"language={tracks.target_language}", "-disposition:s:0", "0",
        "-map_metadata", "0", "-map_chapters", "-1",
    ]
    if spec.muxer in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    with ffmpeg.atomic_output(out_path) as tmp:
        ffmpeg.run([*args, "-f", spec.muxer, tmp])


def fit_length(path: str, out_path: str, sample_rate: int, frames: int) -> None:
    """Any audio file as a mono float WAV at `sample_rate` of exactly `frames` frames (cut, or padded with
    silence): a returned stem laid against the mix it came from."""
    decoded = f"{out_path}.decoded.wav"
    try:
        ffmpeg.run(["-i", path, "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_f32le",
                    "-f", "wav", decoded])
        with sf.SoundFile(decoded) as source, ffmpeg.atomic_output(out_path) as tmp, \
                wavfiles.open_for_write(tmp, sample_rate, 1, frames) as sink:
            written = 0
            for block in source.blocks(blocksize=sample_rate * 10, dtype="float32"):
                piece = block[: frames - written]
                sink.write(piece)
                written += len(piece)
            if written < frames:
                sink.write(np.zeros(frames - written, dtype=np.float32))
    finally:
        ffmpeg.remove_quietly(decoded)


def scale_in_place(path: str, gain_db: float) -> None:
    """Multiply a float WAV by `gain_db`, written anew and renamed over it (a crash leaves the old one)."""
    factor = float(10 ** (gain_db / 20))
    with sf.SoundFile(path) as source, ffmpeg.atomic_output(path) as tmp, \
            wavfiles.open_for_write(tmp, source.samplerate, source.channels, source.frames) as sink:
        for block in source.blocks(blocksize=source.samplerate * 10, dtype="float32", always_2d=True):
            sink.write(block * factor)
