"""espeak-ng synthesis: real clips, resampled, trimmed, and faster at higher rates."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.engines.offline.espeak import EspeakSynthesizer
from service.errors import EngineError

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None, reason="espeak-ng and ffmpeg are required"
)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."


async def test_faster_rate_is_shorter_by_roughly_the_factor(tmp_path: Path) -> None:
    synth = EspeakSynthesizer()
    normal = await synth.synthesize(TEXT, "en", str(tmp_path / "a.wav"), rate=1.0)
    fast = await synth.synthesize(TEXT, "en", str(tmp_path / "b.wav"), rate=1.3)
    assert normal.rate == 1.0 and fast.rate == pytest.approx(1.3, abs=0.01)
    assert normal.duration / fast.duration == pytest.approx(1.3, rel=0.12)
    info = sf.info(normal.path)
    assert info.samplerate == 48000 and info.channels == 1
    assert info.duration == pytest.approx(normal.duration, abs=0.001)


async def test_silence_is_trimmed_and_rate_resampled(tmp_path: Path) -> None:
    clip = await EspeakSynthesizer().synthesize("Hola, ¿qué tal?", "es", str(tmp_path / "c.wav"), sample_rate=16000)
    data, rate = sf.read(clip.path)
    assert rate == 16000 and data.ndim == 1
    edge = int(0.01 * rate)
    assert abs(data[:edge]).max() > 0.001 or abs(data[edge : 2 * edge]).max() > 0.001
    assert abs(data[-edge:]).max() > 0.0005 or abs(data[-2 * edge : -edge]).max() > 0.0005
    assert _names(tmp_path) == ["c.wav"]  # no temp file left behind


def test_voices_and_support() -> None:
    synth = EspeakSynthesizer()
    assert synth.voice_for("en") == "en-us" and synth.voice_for("fr") == "fr-fr"
    assert all(synth.supports(lang) for lang in ("en", "es", "fr", "de", "it", "pt", "ca", "pt-BR"))
    assert not synth.supports("xx")


async def test_errors(tmp_path: Path) -> None:
    synth = EspeakSynthesizer()
    for text, lang, code in (("  ", "en", "empty_text"), ("hi", "xx", "unsupported_language")):
        with pytest.raises(EngineError) as info:
            await synth.synthesize(text, lang, str(tmp_path / "x.wav"))
        assert info.value.code == code
    with pytest.raises(EngineError) as info:
        EspeakSynthesizer(binary="no-such-espeak")
    assert info.value.code == "engine_missing"


async def test_in_process_synthesis_in_the_pool_matches_the_command(tmp_path: Path) -> None:
    from service.workpool import cpu_pool

    pool = cpu_pool.create(1, str(tmp_path / "numba"))
    try:
        in_pool = EspeakSynthesizer(executor=pool)
        command = EspeakSynthesizer()
        line = "Cada frase se traduce y se vuelve a decir, más deprisa o más despacio."
        for rate in (0.85, 1.0, 1.25):
            a = await in_pool.synthesize(line, "es", str(tmp_path / f"pool{rate}.wav"), rate=rate)
            b = await command.synthesize(line, "es", str(tmp_path / f"cli{rate}.wav"), rate=rate)
            assert a.rate == b.rate
            assert a.duration == pytest.approx(b.duration, abs=0.06), rate
            audio, sample_rate = sf.read(a.path)
            assert sample_rate == 48000 and audio.ndim == 1
            assert np.abs(audio).max() > 0.1
            assert np.abs(audio[:48]).max() < 0.05  # the leading silence was trimmed to ~20 ms
    finally:
        pool.shutdown()
