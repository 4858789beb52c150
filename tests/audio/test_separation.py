"""DeepFilterNet3 separation on real speech over a music-like bed: the voice comes back where it was (the model's
lag taken off), and the background keeps the bed while the voice left in it goes well down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio import separation
from service.audio.media_files import window_gain
from tests.support.media import RATE, MixedSoundtrack, soundtrack
from tests.support.speech import available

pytestmark = pytest.mark.skipif(not available(), reason="needs pocketsphinx-testdata (LibriVox speech)")


def _projection_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """How loud `reference` is inside `estimate`, relative to `reference` itself (dB)."""
    gain = float(np.dot(estimate, reference) / np.dot(reference, reference))
    return 20 * float(np.log10(max(abs(gain), 1e-9)))


@pytest.fixture(scope="module")
def separated(tmp_path_factory: pytest.TempPathFactory) -> tuple[MixedSoundtrack, Path, separation.Separated]:
    """Speech 6 dB over the bed, separated once for the tests below."""
    tmp_path = tmp_path_factory.mktemp("separation")
    track = soundtrack(speech_over_bed_db=6.0)
    sf.write(tmp_path / "mix.wav", track.mix, RATE, subtype="FLOAT")
    result = separation.separate(str(tmp_path / "mix.wav"), str(tmp_path / "voice.wav"),
                                 str(tmp_path / "background.wav"), track.speech)
    return track, tmp_path, result


def test_voice_and_background_of_a_mix(separated: tuple[MixedSoundtrack, Path, separation.Separated]) -> None:
    track, tmp_path, result = separated
    assert result.delay_samples == 1440  # DeepFilterNet3: fft 960 - hop 480 + 2 look-ahead hops of 480
    voice, _ = sf.read(tmp_path / "voice.wav", dtype="float32")
    background, _ = sf.read(tmp_path / "background.wav", dtype="float32")
    assert len(voice) == len(background) == len(track.mix)
    # Aligned: the voice correlates best with the true voice at lag 0.
    lags = {lag: float(np.dot(voice[lag:], track.voice[: len(voice) - lag])) for lag in range(0, 1500, 60)}
    assert max(lags, key=lags.__getitem__) == 0
    # The voice left in the background is far down; the bed is still there, at its level where nobody speaks.
    # Measured -23.7 at 6 dB speech over this bed (-25.9 with the earlier -30-dB mask floor); the dubbed master
    # ducks the bed 12 dB more, for the bleed target of -25 dB under the dub.
    assert _projection_db(background, track.voice) <= -20
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


def test_the_voice_isolated_in_parts_is_the_one_pass_voice(
        separated: tuple[MixedSoundtrack, Path, separation.Separated]) -> None:
    track, tmp_path, _ = separated
    mix = str(tmp_path / "mix.wav")
    bounds = separation.part_bounds(mix, len(track.mix) / RATE / 2)
    assert len(bounds) == 2 and bounds[0][0] == 0 and bounds[0][1] == bounds[1][0] and bounds[1][1] == len(track.mix)
    parts = [str(tmp_path / f"part{k}.wav") for k in range(2)]
    for path, (start, end) in zip(parts, bounds, strict=True):
        separation.isolate_part(mix, path, start, end)
    separation.join_parts(parts, str(tmp_path / "joined.wav"))
    one, _ = sf.read(tmp_path / "voice.wav", dtype="float64")
    joined, _ = sf.read(tmp_path / "joined.wav", dtype="float64")
    assert len(joined) == len(one) == len(track.mix)
    # The first part is the one pass itself; after the join the pre-roll has settled the model's state: what
    # differs is far under the voice (measured -37 dB in the half second after the join on the bench's speech).
    join = bounds[1][0]
    assert np.array_equal(joined[:join], one[:join])
    power = float(np.mean(one ** 2))
    assert 10 * np.log10(np.mean((joined[join:join + RATE // 2] - one[join:join + RATE // 2]) ** 2) / power) <= -30
    assert 10 * np.log10(np.mean((joined - one) ** 2) / power) <= -30
