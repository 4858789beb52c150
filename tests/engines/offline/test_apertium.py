"""Apertium CLI translation: one batch in, one output per segment, in order."""

from __future__ import annotations

import shutil

import pytest

from service.engines.offline.apertium import (
    ApertiumTranslator,
    decode_batch,
    discover_modes,
    iso1,
    split_like,
    untranslated_words,
)
from service.errors import EngineError

pytestmark = pytest.mark.skipif(
    shutil.which("apertium") is None or ("en", "es") not in discover_modes(), reason="apertium-eng-spa is not installed"
)


async def test_translates_segments_one_to_one() -> None:
    texts = ["Hello, world! How are you?", "The cat sat on the mat.\nIt was happy.", "", "I like dogs"]
    out = await ApertiumTranslator().translate(texts, "en", "es")
    assert len(out) == 4
    assert "Hola" in out[0] and "mundo" in out[0] and "?" in out[0]
    assert "gato" in out[1] and "\n" not in out[1] and "feliz" in out[1]
    assert out[2] == ""
    assert "perros" in out[3]


async def test_sentence_fragments_do_not_merge_across_segments() -> None:
    out = await ApertiumTranslator().translate(["the red", "car is fast", "I have a big", "house"], "en", "es")
    assert len(out) == 4
    assert "rojo" in out[0].lower() and "casa" in out[3].lower()


async def test_markup_and_marks_survive() -> None:
    texts = ["<p>5 < 6 & 7 > 3</p>", "He goed there #news @bob", "   ", "Zzyzxq"]
    out = await ApertiumTranslator().translate(texts, "en", "es")
    assert out[0].startswith("<p>") and "5 < 6 & 7 > 3" in out[0]
    assert "*" not in out[1] and " #" in out[1] and "@bob" in out[1]
    assert out[2] == "" and out[3] == "Zzyzxq"


async def test_many_segments_keep_order() -> None:
    texts = [f"This is sentence number {i}." for i in range(100)]
    out = await ApertiumTranslator().translate(texts, "en", "es")
    assert len(out) == 100
    assert all(str(i) in line for i, line in enumerate(out))


async def test_unsupported_pair() -> None:
    translator = ApertiumTranslator()
    assert not translator.supports("en", "xx")
    with pytest.raises(EngineError) as info:
        await translator.translate(["hi"], "en", "xx")
    assert info.value.code == "unsupported_language"


def test_pairs_use_iso_codes() -> None:
    translator = ApertiumTranslator()
    assert ("en", "es") in translator.pairs() and ("es", "en") in translator.pairs()
    assert translator.supports("en-US", "es") and translator.supports("eng", "spa")
    assert all(len(s) <= 3 and len(t) <= 3 for s, t in translator.pairs())
    assert iso1("pt-BR") == "pt" and iso1("cat") == "ca"


def test_count_mismatch_is_an_error() -> None:
    with pytest.raises(EngineError) as info:
        decode_batch("<p>uno</p>\n", ["one", "two"])
    assert info.value.code == "engine_failed"


async def test_a_sentence_cut_by_a_pause_is_translated_whole_and_shared_out() -> None:
    translator = ApertiumTranslator()
    fragments = ["I wonder how much he could have done", "for them with his power."]
    parts = await translator.translate(fragments, "en", "es", groups=[0, 0])
    whole = await translator.translate([" ".join(fragments)], "en", "es")
    assert len(parts) == 2 and all(parts)
    assert " ".join(parts).split() == whole[0].split()  # the same sentence, divided where the pause was


def test_a_lost_marker_falls_back_to_sharing_by_length() -> None:
    assert split_like("uno dos tres cuatro cinco seis", ["one two three four", "five six"]) == [
        "uno dos tres cuatro", "cinco seis"]
    assert decode_batch("<p>uno dos tres</p>\n", ["one two", "three"], [[0, 1]]) == ["uno dos", "tres"]


async def test_words_apertium_does_not_know_are_counted_and_unmarked() -> None:
    usage: dict[str, float] = {}
    out = await ApertiumTranslator().translate(["The zorblaxian cat sleeps.", "I like dogs.", "Hi *there"], "en",
                                               "es", usage=usage)
    assert usage["untranslated_words"] == 1  # zorblaxian; the source's own "*there" is not Apertium's mark
    assert "zorblaxian" in out[0] and "*zorblaxian" not in out[0]
    assert untranslated_words("<p>*Zorblax *quux y *a</p>", "<p>x *a</p>") == 2


async def test_an_asterisk_in_the_source_keeps_only_its_own_token() -> None:
    # Whisper writes "*laughs*"; that must not keep Apertium's marks on the words it did not know.
    [out] = await ApertiumTranslator().translate(["The zorblaxian cat *laughs*"], "en", "es")
    assert "*zorblaxian" not in out and "zorblaxian" in out
