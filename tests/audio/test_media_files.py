"""The dubbed video's remux (`media_files.encode_dub_track` + `mux_video`): in every container the dub is in the
codec players expect there (AAC in MP4/MOV, Opus in WebM/MKV), encoded beforehand and copied, and it plays in
time with the picture (a click in the dub is heard where it is in the master, not an encoder's priming later);
the original track and the picture are copied."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from service.audio.media_files import VideoTracks, dub_track_name, encode_dub_track, mux_video
from tests.support.media import FORMATS, RATE, audio_track, probe_streams

DUB_CODEC = {"mp4": "aac", "mov": "aac", "webm": "opus", "mkv": "opus"}
ORIGINAL_CODEC = {"mp4": "aac", "mov": "aac", "webm": "opus", "mkv": "flac"}
CLICK_AT = RATE  # 1 s


@pytest.mark.parametrize("container", ["mp4", "mov", "webm", "mkv"])
def test_the_dub_is_encoded_before_and_copied_in_time(tmp_path: Path, container: str) -> None:
    muxer, video, audio, _ = FORMATS[container]
    source = tmp_path / f"in.{container}"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=25:duration=3", "-f", "lavfi", "-i", "sine=frequency=300:duration=3",
                    "-ac", "2", *video, *audio, "-f", muxer, str(source)], check=True)
    master = np.zeros((3 * RATE, 2), dtype=np.float32)
    master[CLICK_AT:CLICK_AT + 48] = 0.8
    soundfile.write(tmp_path / "master.wav", master, RATE, subtype="PCM_24")
    vtt = tmp_path / "captions.vtt"
    vtt.write_text("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nHola\n")

    track = tmp_path / dub_track_name(container)
    codec = encode_dub_track(str(tmp_path / "master.wav"), container, str(track))
    out = tmp_path / f"out.{container}"
    mux_video(str(source), VideoTracks(str(track), str(vtt), "spa", "eng", ORIGINAL_CODEC[container], codec),
              container, str(out))

    streams = probe_streams(out)["streams"]
    assert [s["codec_name"] for s in streams if s["codec_type"] == "audio"] == [DUB_CODEC[container],
                                                                                 ORIGINAL_CODEC[container]]
    picture_in = next(s for s in probe_streams(source)["streams"] if s["codec_type"] == "video")
    picture_out = next(s for s in streams if s["codec_type"] == "video")
    assert (picture_out["codec_name"], picture_out["nb_read_packets"]) == (picture_in["codec_name"],
                                                                           picture_in["nb_read_packets"])
    dubbed = audio_track(out, 0, tmp_path / "dub.wav")
    assert abs(int(np.argmax(np.abs(dubbed))) - CLICK_AT) <= RATE // 1000  # within 1 ms
