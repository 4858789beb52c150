"""Time-stretch keeps pitch; decode gives a clean WAV or a clear error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio import stretch as stretch_module
from service.audio.decode import decode_to_wav
from service.audio.ffmpeg import AudioInfo
from service.audio.stretch import time_stretch
from service.errors import AudioError

SR = 48000


def _tone(path: Path, freq: float, seconds: float, sr: int = SR, channels: int = 1) -> None:
    t = np.arange(round(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.repeat(x[:, None], channels, axis=1), sr, subtype="FLOAT")


def _dominant_hz(path: Path) -> float:
    x, sr = sf.read(path, always_2d=True)
    mono = x.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * sr / len(mono))


@pytest.mark.parametrize("factor", [1.25, 1.1])
def test_stretch_shortens_and_keeps_pitch(tmp_path: Path, factor: float) -> None:
    src, out = tmp_path / "tone.wav", tmp_path / "fast.wav"
    _tone(src, 440.0, 2.0)
    duration = time_stretch(str(src), str(out), factor, SR)
    assert duration == pytest.approx(2.0 / factor, abs=0.020)
    assert sf.info(out).samplerate == SR
    assert _dominant_hz(out) == pytest.approx(440.0, rel=0.02)


@pytest.mark.parametrize("factor", [0.85, 1.3])
def test_in_process_stretch_matches_ffmpegs_filter(tmp_path: Path, factor: float) -> None:
    """librubberband through ctypes and ffmpeg's rubberband filter give the same length and pitch, at the
    working rate, from a clip at the synthesizer's rate."""
    src = tmp_path / "tone.wav"
    _tone(src, 330.0, 3.0, sr=22050)
    ours = time_stretch(str(src), str(tmp_path / "ours.wav"), factor, SR)
    theirs = stretch_module._by_ffmpeg(str(src), str(tmp_path / "theirs.wav"), factor, SR)
    assert ours == pytest.approx(theirs, abs=0.005)
    assert ours == pytest.approx(3.0 / factor, abs=0.02)
    assert sf.info(tmp_path / "ours.wav").samplerate == SR
    assert _dominant_hz(tmp_path / "ours.wav") == pytest.approx(330.0, rel=0.02)
    level = np.sqrt(np.mean(sf.read(tmp_path / "ours.wav")[0] ** 2))
    assert level == pytest.approx(0.5 / np.sqrt(2), rel=0.1)  # as loud as it came in


def test_stretched_speech_keeps_its_level(tmp_path: Path) -> None:
    """A spoken line stretched either way is as loud as it was (within 1 dB), not softer than its neighbours."""
    src = tmp_path / "line.wav"
    subprocess.run(["espeak-ng", "-v", "es", "-w", str(src), "Una frase de prueba para medir el nivel."], check=True)
    before = sf.read(src)[0]
    for factor in (0.85, 1.25):
        time_stretch(str(src), str(tmp_path / "out.wav"), factor, SR)
        after = sf.read(tmp_path / "out.wav")[0]
        ratio_db = 20 * np.log10(np.sqrt(np.mean(after**2)) / np.sqrt(np.mean(before**2)))
        assert abs(ratio_db) < 1.0, (factor, ratio_db)


def test_stretch_factor_one_is_a_resampling_copy(tmp_path: Path) -> None:
    src, out = tmp_path / "tone.wav", tmp_path / "copy.wav"
    _tone(src, 300.0, 1.0, sr=22050)
    assert time_stretch(str(src), str(out), 1.0, SR) == pytest.approx(1.0, abs=0.001)
    assert sf.info(out).samplerate == SR


def test_stretch_rejects_bad_factor(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        time_stretch(str(tmp_path / "x.wav"), str(tmp_path / "y.wav"), 0.0, SR)


def test_decode_mp3_to_wav(tmp_path: Path) -> None:
    src, mp3, out = tmp_path / "a.wav", tmp_path / "a.mp3", tmp_path / "out.wav"
    _tone(src, 440.0, 1.5, sr=44100, channels=2)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), str(mp3)], check=True)
    info = decode_to_wav(str(mp3), str(out))
    assert isinstance(info, AudioInfo)
    assert (info.sample_rate, info.channels) == (SR, 2)
    assert info.duration == pytest.approx(1.5, abs=0.06)  # mp3 encoder padding
    assert sf.info(out).frames == info.frames
    mono = decode_to_wav(str(mp3), str(tmp_path / "mono.wav"), sample_rate=16000, channels=1, subtype="PCM_24")
    assert (mono.sample_rate, mono.channels) == (16000, 1)
    assert sf.info(tmp_path / "mono.wav").subtype == "PCM_24"


def test_decode_garbage_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError) as err:
        decode_to_wav(str(bad), str(tmp_path / "out.wav"))
    assert "could not decode" in err.value.message
    assert not (tmp_path / "out.wav").exists()


def test_decode_missing_and_empty_raise(tmp_path: Path) -> None:
    with pytest.raises(AudioError):
        decode_to_wav(str(tmp_path / "nope.wav"), str(tmp_path / "out.wav"))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), SR)
    with pytest.raises(AudioError):
        decode_to_wav(str(empty), str(tmp_path / "out.wav"))
    assert list(tmp_path.glob(".*part")) == []
