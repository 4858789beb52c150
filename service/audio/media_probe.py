"""Probe an uploaded media file (a video, or one mixed soundtrack) as untrusted input.

ffprobe and ffmpeg read only the one uploaded file: `-protocol_whitelist file` (no URLs, no pipes) and a demuxer
allow-list (`-format_whitelist`: no HLS playlist, no concat list, no image sequences), so a crafted upload that names
other files or URLs is refused as undecodable and nothing outside it is read. Bounded: stream count, one picture of
at most MAX_VIDEO_PIXELS, duration between the service's limits, and the audio stream decoded through to its end
(a truncated file is refused). Runs in a worker thread or the process pool (it starts subprocesses and waits).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from service.audio import ffmpeg
from service.audio.probe import sha256_of

# Demuxers allowed to open an upload (ffmpeg matches each of a demuxer's names against this list).
FORMAT_WHITELIST = "mov,matroska,wav,mp3,ogg,flac,aac"
SAFE_INPUT = ("-protocol_whitelist", "file", "-format_whitelist", FORMAT_WHITELIST)
MAX_STREAMS = 8
MAX_VIDEO_PIXELS = 3840 * 2160
# A file whose audio decodes to less than this share of the length its container declares is truncated.
DECODED_SHARE = 0.97
_PROBE_SECONDS = 120.0
_DECODE_SECONDS = 600.0

# The picture's container family, by the declared content type; the demuxer must agree.
FAMILY_OF_TYPE = {"video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/x-matroska": "mkv"}
DEMUXER_OF_FAMILY = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska"}


@dataclass(frozen=True)
class VideoStream:
    codec: str
    width: int
    height: int
    frames: int  # packets the demuxer read: the frame count of a video stream
    frame_rate: str


@dataclass(frozen=True)
class MediaProbe:
    ok: bool
    reason: str
    sha256: str
    duration_seconds: float = 0.0
    audio_codec: str = ""
    video: VideoStream | None = None

    @property
    def has_video(self) -> bool:
        return self.video is not None

    def video_json(self) -> dict[str, Any] | None:
        return None if self.video is None else asdict(self.video)


def _refused(digest: str, reason: str) -> MediaProbe:
    return MediaProbe(False, reason, digest)


def decoded_seconds(path: str, stream: str = "0:a:0") -> float:
    """How many seconds of `stream` decode before the file ends or breaks (ffmpeg's own progress report)."""
    code, out = ffmpeg.capture([*SAFE_INPUT, "-i", path, "-map", stream, "-vn", "-sn", "-dn", "-progress",
                                "pipe:1", "-f", "null", "-"], time_limit=_DECODE_SECONDS)
    times = re.findall(rb"out_time_us=(\d+)", out)
    return int(times[-1]) / 1e6 if code == 0 and times else 0.0


def probe_media(path: str, content_type: str) -> MediaProbe:
    """What the upload holds, or why it is refused (`ok` False with a reason fit to show its owner)."""
    digest = sha256_of(path)
    code, out = ffmpeg.capture([*SAFE_INPUT, "-count_packets", "-show_entries",
                                "format=format_name,duration:stream=index,codec_type,codec_name,width,height,"
                                "nb_read_packets,avg_frame_rate:stream_disposition=attached_pic",
                                "-of", "json", path], probe=True, time_limit=_PROBE_SECONDS)
    if code != 0:
        return _refused(digest, "the file is not a media format we read (MP4, MOV, WebM, MKV or an audio file)")
    info = json.loads(out or b"{}")
    demuxer = str(info.get("format", {}).get("format_name", ""))
    family = FAMILY_OF_TYPE.get(content_type)
    if family is not None and DEMUXER_OF_FAMILY[family] not in demuxer.split(","):
        return _refused(digest, f"the file is not {family.upper()} as its type '{content_type}' says")
    streams = info.get("streams") or []
    if len(streams) > MAX_STREAMS:
        return _refused(digest, f"the file has {len(streams)} streams; at most {MAX_STREAMS} are accepted")
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    pictures = [s for s in streams if s.get("codec_type") == "video"
                and not (s.get("disposition") or {}).get("attached_pic")]
    if not audio:
        return _refused(digest, "the file has no audio stream: there is no soundtrack to dub")
    if len(pictures) > 1:
        return _refused(digest, "the file has more than one video stream")
    video = None
    if pictures:
        if family is None:
            return _refused(digest, "the file holds a picture: upload it with its video type (video/mp4, ...)")
        picture = pictures[0]
        width, height = int(picture.get("width") or 0), int(picture.get("height") or 0)
        if width * height <= 0 or width * height > MAX_VIDEO_PIXELS:
            return _refused(digest, f"the picture is {width}x{height}; at most 3840x2160 is accepted")
        video = VideoStream(str(picture.get("codec_name")), width, height, int(picture.get("nb_read_packets") or 0),
                            str(picture.get("avg_frame_rate") or "0/0"))
    raw_duration = info.get("format", {}).get("duration")
    duration = float(raw_duration) if raw_duration not in (None, "N/A") else 0.0
    if duration <= 0:
        return _refused(digest, "the file's length cannot be read")
    return MediaProbe(True, "", digest, duration, str(audio[0].get("codec_name")), video)


def check_decodes(path: str, duration: float) -> str | None:
    """None when the audio decodes through to the end the container declares, else why not."""
    decoded = decoded_seconds(path)
    if decoded < DECODED_SHARE * duration:
        return (f"the audio decodes for {decoded:.1f} s of the {duration:.1f} s the file declares: "
                "it is truncated or damaged")
    return None
