"""DeepFilterNet3 separation on real speech over a music-like bed: the voice comes back where it was (the model's
lag taken off), and the background keeps the bed while the voice left in it goes well down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio import separation
from service.audio.media_files import window_gain
from tests.support.media import RATE, soundtrack
from tests.support.speech import available

pytestmark = pytest.mark.skipif(not available(), reason="needs pocketsphinx-testdata (LibriVox speech)")


def _projection_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """How loud `reference` is inside `estimate`, relative to `reference` itself (dB)."""
    gain = float(np.dot(estimate, reference) / np.dot(reference, reference))
    return 20 * float(np.log10(max(abs(gain), 1e-9)))


def test_voice_and_background_of_a_mix(tmp_path: Path) -> None:
    track = soundtrack(speech_over_bed_db=6.0)
    sf.write(tmp_path / "mix.wav", track.mix, RATE, subtype="FLOAT")
    result = separation.separate(str(tmp_path / "mix.wav"), str(tmp_path / "voice.wav"),
                                 str(tmp_path / "background.wav"), track.speech)
    assert result.delay_samples == 1440  # DeepFilterNet3: fft 960 - hop 480 + 2 look-ahead hops of 480
    voice, _ = sf.read(tmp_path / "voice.wav", dtype="float32")
    background, _ = sf.read(tmp_path / "background.wav", dtype="float32")
    assert len(voice) == len(background) == len(track.mix)
    # Aligned: the voice correlates best with the true voice at lag 0.
    lags = {lag: float(np.dot(voice[lag:], track.voice[: len(voice) - lag])) for lag in range(0, 1500, 60)}
    assert max(lags, key=lags.__getitem__) == 0
    # The voice left in the background is far down; the bed is still there, at its level where nobody speaks.
    assert _projection_db(background, track.voice) <= -24  # measured -25.9 (6 dB speech over this bed)
    assert _projection_db(background, track.bed) >= -6
    outside = np.ones(len(background), dtype=bool)
    for start, end in track.speech:
        outside[int((start - 0.3) * RATE):int((end + 0.3) * RATE)] = False
    level = 20 * np.log10(np.std(background[outside]) / np.std(track.bed[outside]))
    assert abs(level) <= 1.0


def test_the_window_crossfades_at_its_edges_only() -> None:
    rate = 1000
    gain = window_gain(0, 10 * rate, rate, 2.0, 5.0, 10.0)
    assert gain[int(1.9 * rate)] == 0 and gain[int(2.1 * rate)] == 1 and gain[int(5.1 * rate)] == 0
    assert 0 < gain[2 * rate] < 1  # halfway through the fade at the edge
    whole = window_gain(0, 10 * rate, rate, 0.0, 10.0, 10.0)
    assert whole.min() == 1  # no fade at the file's own ends
