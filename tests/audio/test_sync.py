"""Sync measured from audio: energy activity, per-unit durations and onsets, speech IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio.sync import UnitWindow, measure_sync
from service.audio.voice_activity import energy_activity, runs_seconds, speech_regions

RATE = 16000


def voiced(path: Path, spans: list[tuple[float, float]], total: float, noise: float = 0.0) -> Path:
    """A buzzy voice-like tone over the spans (syllable-rate amplitude wobble), optional noise floor."""
    t = np.arange(int(total * RATE)) / RATE
    audio = noise * np.random.default_rng(3).standard_normal(len(t))
    for start, end in spans:
        inside = (t >= start) & (t < end)
        buzz = np.sign(np.sin(2 * np.pi * 140 * t[inside]))
        audio[inside] += 0.3 * buzz * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t[inside]))
    sf.write(path, audio.astype(np.float32), RATE)
    return path


def test_energy_activity_finds_the_spans_and_bridges_short_gaps(tmp_path: Path) -> None:
    path = voiced(tmp_path / "v.wav", [(0.5, 1.5), (1.6, 2.0), (3.0, 4.0)], 5.0, noise=0.002)
    found = runs_seconds(energy_activity(str(path)))
    assert found == [pytest.approx((0.5, 2.0), abs=0.02), pytest.approx((3.0, 4.0), abs=0.02)]


def test_measured_figures_follow_the_audio_not_the_plan(tmp_path: Path) -> None:
    source = voiced(tmp_path / "source.wav", [(1.0, 3.0), (5.0, 6.0)], 8.0, noise=0.001)
    # The dub: the first unit 10 % short and on time, the second 50 % long and 0.2 s late.
    stem = voiced(tmp_path / "stem.wav", [(1.0, 2.8), (5.2, 6.7)], 8.0)
    figures = measure_sync(str(source), str(stem), [UnitWindow(0, 1.0, 3.0, 5.0), UnitWindow(1, 5.0, 6.0, 8.0)])
    first, second = figures["per_unit"]  # type: ignore[misc]
    assert first["duration_ratio"] == pytest.approx(0.9, abs=0.02) and abs(first["onset_offset"]) <= 0.02
    assert second["duration_ratio"] == pytest.approx(1.5, abs=0.03)
    assert second["onset_offset"] == pytest.approx(0.2, abs=0.02)
    assert figures["within_10_percent"] == 0.5
    assert figures["speech_iou"] == pytest.approx((1.8 + 0.8) / (2.0 + 1.7), abs=0.02)


def test_silero_finds_speech_regions_offline(tmp_path: Path) -> None:
    from service.sample import make_sample

    sample = make_sample(tmp_path / "sample")
    regions = speech_regions(str(sample.voice))
    assert len(regions) == len(sample.speech)
    for (start, end), (real_start, real_end) in zip(regions, sample.speech, strict=True):
        assert abs(start - real_start) < 0.15 and abs(end - real_end) < 0.3
