"""ebur128-based loudness: known tone figures, silence convention, summary parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio.loudness import Loudness, StreamingLoudness, measure_loudness, parse_ebur128_summary

SR = 48000


def _sine(seconds: float, amplitude: float, freq: float = 997.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_tone_loudness_and_true_peak(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _sine(5.0, 0.1), SR, subtype="FLOAT")
    loud = measure_loudness(str(path))
    # 997 Hz sine at -20 dBFS peak, mono: mean square 0.005 -> about -23 LUFS.
    assert loud.integrated_lufs == pytest.approx(-23.0, abs=0.3)
    assert loud.true_peak_dbtp == pytest.approx(-20.0, abs=0.2)
    assert not loud.is_silent


def test_silence_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR * 2, dtype=np.float32), SR)
    loud = measure_loudness(str(path))
    assert loud.integrated_lufs is None
    assert loud.true_peak_dbtp is None
    assert loud.is_silent


def test_streaming_matches_file(tmp_path: Path) -> None:
    x = np.stack([_sine(4.0, 0.2), _sine(4.0, 0.05, 300.0)], axis=1)
    path = tmp_path / "st.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with StreamingLoudness(SR, 2) as meter:
        for start in range(0, len(x), SR // 3):
            meter.feed(x[start : start + SR // 3])
        streamed = meter.finish()
    assert streamed == measure_loudness(str(path))


def test_parse_summary_without_peak() -> None:
    text = """[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -16.7 LUFS
    Threshold: -26.9 LUFS

  Loudness range:
    LRA:         5.8 LU
    Threshold: -36.9 LUFS
"""
    assert parse_ebur128_summary(text) == Loudness(-16.7, None, 5.8)
