"""Kokoro-82M: the packaged model joined and hash-checked, every phoneme espeak-ng writes given a Kokoro
symbol on purpose, clips under the true-peak ceiling, and the rate control the fitting stage leans on."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.intelligibility import SENTENCES
from service.audio import speech_clip
from service.audio.loudness import measure_loudness
from service.engines.offline import espeak, espeak_lib, kokoro, kokoro_lib, kokoro_phonemes
from service.engines.offline.kokoro import KOKORO_82M, KokoroSynthesizer
from service.engines.offline.packaged_model import PackagedModel, materialize
from service.errors import EngineError
from tests.support import kokoro_dir

pytestmark = pytest.mark.skipif(not espeak_lib.available(), reason="libespeak-ng is required")


def _vocab() -> dict[str, int]:
    vocab: dict[str, int] = json.loads((Path(kokoro_dir()) / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    return vocab


# -- the model: joined from four packages, checked by hash -------------------------------------------------


def test_the_packaged_kokoro_joins_to_its_hash() -> None:
    folder = Path(kokoro_dir())
    joined = folder / KOKORO_82M.joined
    assert joined.stat().st_size == KOKORO_82M.size_bytes
    assert all((folder / name).is_file() for name in KOKORO_82M.extras)


def _install(root: Path, stem: str, parts: tuple[bytes, ...]) -> tuple[tuple[str, ...], str]:
    """Part packages laid out as Kokoro's are (`<package>/part.bin`) and a package holding the extras."""
    names = []
    for number, data in enumerate(parts, start=1):
        package = root / f"{stem}_model_{number}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "part.bin").write_bytes(data)
        names.append(package.name)
    extras = root / f"{stem}_voice" / "data"
    extras.mkdir(parents=True)
    (extras.parent / "__init__.py").write_text("")
    (extras / "vocab.json").write_text("{}")
    return tuple(names), extras.parent.name


def test_parts_named_part_bin_join_with_extras_from_another_package(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    parts = (b"kokoro-1|" * 500, b"kokoro-2|" * 400, b"kokoro-3|" * 300)
    stem = f"fake_kokoro_{tmp_path.name.replace('-', '_')}"
    names, extras_package = _install(tmp_path / "site", stem, parts)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(parts)
    model = PackagedModel(name="fake-kokoro", parts=names, joined="kokoro.onnx",
                          sha256=hashlib.sha256(whole).hexdigest(), size_bytes=len(whole), extras=("vocab.json",),
                          data_folder="", part_file="part.bin", extras_package=extras_package)
    folder = materialize(model, tmp_path / "data")
    assert (folder / "kokoro.onnx").read_bytes() == whole and (folder / "vocab.json").is_file()

    corrupt = PackagedModel(**{**model.__dict__, "name": "corrupt", "sha256": "0" * 64})
    with pytest.raises(EngineError) as caught:
        materialize(corrupt, tmp_path / "data")
    assert caught.value.code == "model_corrupt"
    assert not (tmp_path / "data" / "models" / "corrupt").exists()


# -- phonemes: none dropped without a decision -------------------------------------------------------------


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_every_symbol_espeak_writes_for_everyday_sentences_is_spoken(language: str) -> None:
    vocab = _vocab()
    voice = espeak.VOICES.get(language, language)
    for sentence in SENTENCES[language]:
        ipa = " ".join(espeak_lib.phonemes(sentence, voice))
        mapped = kokoro_phonemes.to_symbols(ipa, vocab, language)
        assert mapped.unknown == [], (sentence, ipa)
        assert set(mapped.symbols) <= set(vocab), sentence


def test_catalan_dz_and_z_become_kokoro_symbols_not_silence() -> None:
    vocab = _vocab()
    symbols = kokoro_lib.symbols("El metge i la platja, junts.", "ca", "ca", vocab)
    assert symbols.count("ʤ") == 2 and "ʒ" in symbols
    assert "ʑ" not in symbols


def test_the_catalan_trill_is_one_trill_not_a_tap_and_a_trill() -> None:
    symbols = kokoro_lib.symbols("Els carrers semblaven rius.", "ca", "ca", _vocab())
    assert symbols.count("r") >= 2 and "ɾr" not in symbols


def test_every_substitute_is_a_symbol_kokoro_knows() -> None:
    vocab = set(_vocab())
    for table in (kokoro_phonemes.TIED, kokoro_phonemes.TIED_ENGLISH, kokoro_phonemes.SUBSTITUTES):
        for source, target in table.items():
            assert set(target) <= vocab | {" "}, (source, target)


def test_a_symbol_with_no_substitute_is_reported_never_dropped_silently() -> None:
    mapped = kokoro_phonemes.to_symbols("aʢbɹ\u0308", _vocab(), "es")  # ʢ: no Kokoro symbol is near it
    assert mapped.unknown == ["ʢ"]
    assert mapped.symbols == "abɹ"  # the diacritic Kokoro lacks goes by rule; its letter stays
    assert mapped.substituted == {"\u0308": ""}


def test_punctuation_is_kept_between_clauses() -> None:
    assert kokoro_phonemes.clauses("¿Hola, qué tal? Bien.") == [("¿Hola", ","), ("qué tal", "?"), ("Bien", ".")]


# -- levels ------------------------------------------------------------------------------------------------


def test_levels_keep_the_true_peak_under_minus_one_dbtp() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    # A tone at a quarter of the rate, phased so every sample misses the crest: sample peak 0.95, true peak 1.35.
    loud = (1.35 * np.sin(2 * np.pi * rate / 4 * t + np.pi / 4)).astype(np.float32)
    assert np.max(np.abs(loud)) < 1.0 and speech_clip.true_peak(loud, rate) > 1.3
    levelled = kokoro_lib.levels(loud, rate)
    assert 20 * math.log10(speech_clip.true_peak(levelled, rate)) <= -1.0


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(1) as executor:
        yield executor


async def test_a_spoken_line_is_under_the_ceiling_and_faster_at_a_higher_rate(
        pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    synth = KokoroSynthesizer(pool, kokoro_dir())
    text = "¡El perro corre rápido por la carretera mojada, y nadie lo puede alcanzar!"
    normal = await synth.synthesize(text, "es", str(tmp_path / "a.wav"))
    fast = await synth.synthesize(text, "es", str(tmp_path / "b.wav"), rate=1.25, voice="jf_gongitsune")
    assert normal.rate == pytest.approx(1.0) and fast.rate == pytest.approx(1.25)
    assert normal.duration / fast.duration == pytest.approx(1.25, rel=0.15)
    info = sf.info(normal.path)
    assert info.samplerate == 48000 and info.channels == 1
    for clip in (normal, fast):
        peak = measure_loudness(clip.path).true_peak_dbtp  # ffmpeg's ebur128, not our own measure
        assert peak is not None and peak <= -1.0


def test_a_line_is_cut_into_phrases_after_its_punctuation_and_not_after_a_short_word() -> None:
    line = "Mañana por la tarde, vamos a comprar pan y fruta en el mercado."
    assert kokoro_lib.phrases(line, 0) == [line]
    groups = kokoro_lib.phrases(line, 2)
    assert groups[0] == "Mañana por la tarde," and " ".join(groups) == line and len(groups) == 3
    assert all(len(group.split()[-1].strip(",.")) > 3 for group in groups)
    assert kokoro_lib.phrases("Hola", 3) == ["Hola"]


def test_a_fade_far_under_the_speech_is_not_kept_as_speech() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    speech = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fade = (0.5 * 10 ** (-50 / 20) * np.sin(2 * np.pi * 220 * t[: rate // 4])).astype(np.float32)
    kept = kokoro_lib.audible(np.concatenate([speech, fade]), rate)
    assert kept.size / rate == pytest.approx(1.0, abs=0.04)


def test_word_pauses_become_as_few_phrase_pauses_as_the_longest_allows() -> None:
    count, each = kokoro_lib.breaks_for(0.1, 7)  # 0.6 s between 7 words
    assert count == 4 and each == pytest.approx(0.15) and each <= kokoro_lib.MAX_PHRASE_PAUSE
    assert kokoro_lib.breaks_for(0.4, 3) == (2, kokoro_lib.MAX_PHRASE_PAUSE)  # never more pauses than gaps
    assert kokoro_lib.breaks_for(0.0, 7) == (0, 0.0) and kokoro_lib.breaks_for(0.3, 1) == (0, 0.0)


async def test_a_line_given_word_pauses_is_longer_by_about_that_silence(
        pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    synth = KokoroSynthesizer(pool, kokoro_dir())
    assert synth.pauses_between_words
    text = "Podría haber sido amable."
    plain = await synth.synthesize(text, "es", str(tmp_path / "a.wav"), rate=0.85)
    paused = await synth.synthesize(text, "es", str(tmp_path / "b.wav"), rate=0.85, word_pause=0.1)
    assert paused.rate == plain.rate
    # 3 gaps of 0.1 s, in one pause; phrases spoken apart come out a little longer than inside the line
    assert 0.25 <= paused.duration - plain.duration <= 0.8


async def test_styles_are_listed_and_an_unknown_one_is_refused(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    assert kokoro.voices("es")[0] == KokoroSynthesizer(pool, kokoro_dir()).voice_for("es")
    assert sorted(kokoro.voices("ca-ES")) == sorted(kokoro.STYLES)
    assert kokoro.voices("ja") == ()
    with pytest.raises(EngineError) as caught:
        await KokoroSynthesizer(pool, kokoro_dir()).synthesize("Hola", "es", str(tmp_path / "x.wav"), voice="nobody")
    assert caught.value.code == "bad_input"
