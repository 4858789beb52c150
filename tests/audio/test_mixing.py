"""Voice-track assembly and the final mix, checked with independent measurements."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio.ducking import duck_envelope
from service.audio.mix import MixSettings, mix
from service.audio.voice_track import PlacedClip, build_voice_track

SR = 48000


def _tone(seconds: float, freq: float, amplitude: float, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _measure(path: Path) -> tuple[float, float]:
    """Integrated LUFS and true peak straight from ffmpeg's ebur128, parsed here, not by our module.

    (loudnorm's ``input_i`` disagreed with both ebur128 and a hand-written BS.1770 check by
    0.4-0.8 LU on these short, heavily gated files, so it is not used.)
    """
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = proc.stderr[proc.stderr.rindex("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary)
    assert integrated and peak, summary
    return float(integrated.group(1)), float(peak.group(1))


def _level_at(x: np.ndarray, start_s: float, freq: float) -> float:
    """dB level of one sine component in the 1 s window starting at ``start_s``."""
    seg = x[round(start_s * SR) : round((start_s + 1.0) * SR)]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    return float(20 * np.log10(spectrum[round(freq)] + 1e-12))  # 1 Hz bins for a 1 s window


def test_build_voice_track_positions_truncates_and_resamples(tmp_path: Path) -> None:
    a = _tone(1.0, 500.0, 0.5)
    sf.write(tmp_path / "a.wav", a, SR, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", _tone(2.0, 500.0, 0.5), SR, subtype="FLOAT")
    sf.write(tmp_path / "c.wav", _tone(1.0, 400.0, 0.5, sr=22050), 22050)
    out = tmp_path / "voice.wav"
    clips = [
        PlacedClip(str(tmp_path / "b.wav"), 2.0, 1.0),  # cut at 3.0 s with a fade
        PlacedClip(str(tmp_path / "a.wav"), 0.5),
        PlacedClip(str(tmp_path / "c.wav"), 9.5),  # runs past the end of the track
        PlacedClip(str(tmp_path / "a.wav"), 20.0),  # entirely after the end: ignored
    ]
    assert build_voice_track(clips, 10.0, str(out), SR) == str(out)
    info = sf.info(out)
    assert (info.frames, info.channels, info.samplerate) == (10 * SR, 1, SR)
    y, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(y[SR // 2 : SR // 2 + SR], a, atol=1e-6)
    assert np.all(y[: SR // 2] == 0) and np.all(y[SR + SR // 2 : 2 * SR] == 0)
    cut = 3 * SR
    assert np.max(np.abs(y[cut - 5 * SR // 100 : cut - SR // 50])) > 0.45  # untouched before the fade
    assert np.max(np.abs(y[cut - 48 : cut])) < 0.02  # faded to ~0 at the cut
    assert np.all(y[cut : 9 * SR] == 0)
    tail = y[9 * SR + SR // 2 :]
    assert np.max(np.abs(tail[: SR // 4])) > 0.45 and abs(tail[-1]) < 0.02


def test_overlapping_clips_add(tmp_path: Path) -> None:
    sf.write(tmp_path / "dc.wav", np.full(SR, 0.25, dtype=np.float32), SR, subtype="FLOAT")
    out = tmp_path / "v.wav"
    clips = [PlacedClip(str(tmp_path / "dc.wav"), 0.0), PlacedClip(str(tmp_path / "dc.wav"), 0.5)]
    build_voice_track(clips, 2.0, str(out), SR)
    y, _ = sf.read(out, dtype="float32")
    assert y[SR // 4] == pytest.approx(0.25) and y[3 * SR // 4] == pytest.approx(0.5)
    assert y[5 * SR // 4] == pytest.approx(0.25) and y[7 * SR // 4] == 0


def test_duck_envelope_attack_hold_release() -> None:
    settings = MixSettings(duck_db=-12.0, attack_ms=80.0, release_ms=400.0, hold_ms=200.0)
    active = np.zeros(300, dtype=bool)
    active[100:150] = True  # 10 ms hops: speech from 1.0 s to 1.5 s
    gains = duck_envelope(active, settings)
    assert gains[90] == 0.0  # before the look-ahead
    assert gains[100] == pytest.approx(-12.0)  # fully ducked at the onset
    assert gains[149 + 20] == pytest.approx(-12.0)  # held 200 ms after the last active hop
    assert -12.0 < gains[149 + 40] < 0.0  # releasing
    assert gains[149 + 21 + 40] == 0.0  # back up after 400 ms


@pytest.fixture()
def scene(tmp_path: Path) -> tuple[Path, Path]:
    """12 s stereo background (200 Hz tone + noise) and a voice track with a 1 kHz 'speech' from 4 to 7 s."""
    rng = np.random.default_rng(7)
    bed = _tone(12.0, 200.0, 0.1)
    noise = rng.normal(0.0, 0.01, size=(bed.shape[0], 2)).astype(np.float32)
    background = tmp_path / "bg.wav"
    sf.write(background, bed[:, None] * np.array([1.0, 0.8], dtype=np.float32) + noise, SR, subtype="PCM_24")
    sf.write(tmp_path / "speech.wav", _tone(3.0, 1000.0, 0.15, sr=24000), 24000)
    voice = tmp_path / "voice.wav"
    build_voice_track([PlacedClip(str(tmp_path / "speech.wav"), 4.0, 3.0)], 12.0, str(voice), SR)
    return background, voice


def test_mix_with_background(tmp_path: Path, scene: tuple[Path, Path]) -> None:
    background, voice = scene
    out = tmp_path / "out"
    out.mkdir()
    master, web, stem = out / "master.wav", out / "web.mp3", out / "stem.wav"
    result = mix(str(voice), str(background), str(master), str(web), str(stem), MixSettings())

    info = sf.info(master)
    assert abs(info.frames / info.samplerate - sf.info(background).duration) < 0.005
    assert (info.samplerate, info.channels, info.subtype) == (SR, 2, "PCM_24")
    assert result.channels == 2 and result.frames == info.frames

    integrated, true_peak = _measure(master)
    assert integrated == pytest.approx(-16.0, abs=1.0)
    assert true_peak <= -1.0
    assert result.integrated_lufs == pytest.approx(integrated, abs=0.3)
    assert result.true_peak_dbtp is not None and result.true_peak_dbtp <= -1.0

    x, _ = sf.read(master, dtype="float64")
    for channel in range(2):
        quiet = _level_at(x[:, channel], 1.0, 200.0)
        ducked = _level_at(x[:, channel], 5.0, 200.0)
        assert ducked - quiet == pytest.approx(-12.0, abs=1.0)
    assert _level_at(x[:, 0], 5.0, 1000.0) > _level_at(x[:, 0], 1.0, 1000.0) + 40  # voice in both channels
    assert _level_at(x[:, 1], 5.0, 1000.0) > _level_at(x[:, 1], 1.0, 1000.0) + 40

    stem_info = sf.info(stem)
    assert (stem_info.frames, stem_info.channels) == (info.frames, 1)
    assert result.stem_true_peak_dbtp is not None and result.stem_true_peak_dbtp <= -1.0
    web_duration = float(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(web)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert web_duration == pytest.approx(12.0, abs=0.1)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


def test_mix_limits_spiky_background(tmp_path: Path, scene: tuple[Path, Path]) -> None:
    _, voice = scene
    rng = np.random.default_rng(3)
    bed = rng.normal(0.0, 0.01, size=(12 * SR, 2)).astype(np.float32)
    bed[SR // 2 :: 2 * SR] = 0.9  # clicks: the loudness gain would push these far over the ceiling
    background = tmp_path / "spiky.wav"
    sf.write(background, bed, SR, subtype="FLOAT")
    master = tmp_path / "m.wav"
    result = mix(str(voice), str(background), str(master), str(tmp_path / "w.mp3"), str(tmp_path / "s.wav"))
    assert result.limited
    integrated, true_peak = _measure(master)
    assert integrated == pytest.approx(-16.0, abs=1.0)
    assert true_peak <= -1.0
    assert sf.info(master).frames == 12 * SR


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_mix_voice_only_speech_opus(tmp_path: Path) -> None:
    raw = tmp_path / "raw.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(raw), "This is the dubbed voice, spoken without any background at all."],
        check=True,
    )
    voice = tmp_path / "voice.wav"
    build_voice_track([PlacedClip(str(raw), 0.3)], 6.0, str(voice), SR)
    master, web, stem = tmp_path / "m.wav", tmp_path / "w.opus", tmp_path / "s.wav"
    result = mix(str(voice), None, str(master), str(web), str(stem), MixSettings(web_format="opus"))
    assert sf.info(master).frames == 6 * SR and sf.info(master).channels == 1
    integrated, true_peak = _measure(master)
    assert integrated == pytest.approx(-16.0, abs=1.0)
    assert true_peak <= -1.0
    assert result.stem_integrated_lufs == result.integrated_lufs
    assert sf.info(stem).frames == 6 * SR
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", str(web)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "opus"


def test_mix_silent_voice_is_not_normalised(tmp_path: Path) -> None:
    voice = tmp_path / "voice.wav"
    build_voice_track([], 2.0, str(voice), SR)
    result = mix(str(voice), None, str(tmp_path / "m.wav"), str(tmp_path / "w.mp3"), str(tmp_path / "s.wav"))
    assert result.integrated_lufs is None and result.true_peak_dbtp is None
    assert result.gain_db == 0.0
    assert sf.info(tmp_path / "m.wav").frames == 2 * SR


def test_stem_is_voice_at_master_gain(tmp_path: Path, scene: tuple[Path, Path]) -> None:
    background, voice = scene
    stem = tmp_path / "s.wav"
    result = mix(str(voice), str(background), str(tmp_path / "m.wav"), str(tmp_path / "w.mp3"), str(stem))
    v, _ = sf.read(voice, dtype="float64")
    s, _ = sf.read(stem, dtype="float64")
    assert s.shape == v.shape
    np.testing.assert_allclose(s, v * 10 ** (result.gain_db / 20), atol=1e-4)  # no limiting needed on this voice
    integrated, true_peak = _measure(stem)
    assert result.stem_integrated_lufs == pytest.approx(integrated, abs=0.2)
    assert result.stem_true_peak_dbtp == pytest.approx(true_peak, abs=0.2)


def test_true_peak_overshoot_falls_back_to_oversampled_limiter(
    tmp_path: Path, scene: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limiter at the output rate lets fs/4 bursts sampled 45 degrees off their crests through with
    +3 dB inter-sample peaks: the measured master is over the ceiling, so the pass is repeated with the
    4x limiter."""
    from service.audio import mix as mixing

    monkeypatch.setattr(mixing, "LIMITER_OVERSAMPLE", 1)
    _, voice = scene
    rng = np.random.default_rng(3)
    bed = rng.normal(0.0, 0.01, size=(12 * SR, 2)).astype(np.float32)
    burst = np.tile(np.array([0.6, 0.6, -0.6, -0.6], dtype=np.float32), 64)[:, None]
    for start in range(SR // 2, 12 * SR - SR, 2 * SR):
        bed[start : start + burst.shape[0]] = burst
    background = tmp_path / "spiky.wav"
    sf.write(background, bed, SR, subtype="FLOAT")
    master, web = tmp_path / "m.wav", tmp_path / "w.mp3"
    result = mix(str(voice), str(background), str(master), str(web), str(tmp_path / "s.wav"))
    assert result.limited and result.corrections >= 1
    assert any("over ceiling" in note for note in result.notes)
    integrated, true_peak = _measure(master)
    assert integrated == pytest.approx(-16.0, abs=1.0)
    assert true_peak <= -1.0
    assert result.true_peak_dbtp == pytest.approx(true_peak, abs=0.2)
    assert sf.info(master).frames == 12 * SR
    web_integrated, _ = _measure(web)  # the web copy is the final (corrected) master, not the first attempt
    assert web_integrated == pytest.approx(integrated, abs=0.5)
