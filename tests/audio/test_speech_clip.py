"""A synthesized line: streamed WAV parts joined, silence trimmed, written at the working rate."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio.speech_clip import join_trimmed, read_streamed_wav
from service.errors import EngineError


def _streamed_wav(path: Path, samples: np.ndarray, rate: int, size_field: int) -> None:
    """A 16-bit mono WAV whose RIFF and data sizes are `size_field` (0 or 0xFFFFFFFF), as a stream writes it."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", size_field) + b"WAVE" + fmt
                     + b"data" + struct.pack("<I", size_field) + pcm)


def _line(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 180 * t)
    silence = np.zeros(rate // 4)
    return np.concatenate([silence, voice, silence])


@pytest.mark.parametrize("size_field", [0, 0xFFFFFFFF])
def test_streamed_parts_are_joined_trimmed_and_resampled(tmp_path: Path, size_field: int) -> None:
    parts = []
    for i, seconds in enumerate((1.0, 0.5)):
        part = tmp_path / f"part{i}.wav"
        _streamed_wav(part, _line(seconds, 24000), 24000, size_field)
        parts.append(str(part))
    out = tmp_path / "line.wav"
    duration = join_trimmed(parts, str(out), 48000)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (48000, 1, "PCM_16")
    assert duration == pytest.approx(info.duration, abs=1e-3)
    # 1.5 s of voice and the 0.5 s pause between the parts; the outer silence trimmed to 20 ms each side.
    assert duration == pytest.approx(1.0 + 0.25 + 0.25 + 0.5 + 0.04, abs=0.01)


def test_a_regular_wav_reads_the_same(tmp_path: Path) -> None:
    samples = _line(0.5, 22050)
    sf.write(tmp_path / "a.wav", samples, 22050, subtype="PCM_16")
    read, rate = read_streamed_wav(str(tmp_path / "a.wav"))
    assert rate == 22050 and len(read) == len(samples)
    assert np.max(np.abs(read - samples)) < 1e-4


def test_not_a_wav_or_silent_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"<html>oops</html>")
    with pytest.raises(EngineError):
        read_streamed_wav(str(tmp_path / "x.wav"))
    _streamed_wav(tmp_path / "quiet.wav", np.zeros(24000), 24000, 0)
    with pytest.raises(EngineError, match="silent"):
        join_trimmed([str(tmp_path / "quiet.wav")], str(tmp_path / "out.wav"), 48000)
    assert not (tmp_path / "out.wav").exists()
