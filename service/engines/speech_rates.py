"""How many characters of text a language fits into a second of natural speech.

The translator uses this to give every line a length its time slot can hold (length-controlled or
"isometric" translation aims within about ±10 % of what fits), the dubbing stage to judge the rest.

Rough figures, characters per second of conversational speech, spaces and punctuation included.
They are derived from cross-language speech-rate measurements (Pellegrino, Coupé & Marsico 2011,
"A cross-language perspective on speech information rate", Language 87(3): syllables per second,
e.g. English 6.2, French 7.2, German 6.0, Italian 7.0, Spanish 7.8, Japanese 7.8 morae, Mandarin
5.2) multiplied by each script's typical characters per syllable, and checked against the
automatic-dubbing / isometric-MT literature (Federico et al. 2020, "From speech-to-speech
translation to automatic dubbing"; Lakew et al. 2021/2022, "Isochrony-aware neural machine
translation for automatic dubbing", "Isometric MT"), which budgets lines by character count.
Scripts that write a syllable per character (Chinese, Japanese kana/kanji, Korean hangul blocks)
need far fewer characters per second. Treat them as a starting point, not a measurement.
"""

from __future__ import annotations

import math

from service.languages import normalize

DEFAULT_CHARS_PER_SECOND = 14.0

CHARS_PER_SECOND: dict[str, float] = {
    # Latin-script European languages.
    "en": 14.5,
    "es": 15.5,
    "fr": 15.0,
    "de": 15.0,
    "it": 15.0,
    "pt": 15.0,
    "ca": 15.0,
    "gl": 15.0,
    "eu": 14.5,
    "oc": 15.0,
    "ro": 15.0,
    "nl": 14.5,
    "af": 14.5,
    "sv": 14.0,
    "da": 14.0,
    "no": 14.0,
    "nb": 14.0,
    "nn": 14.0,
    "is": 13.5,
    "fi": 13.5,
    "et": 13.5,
    "pl": 14.0,
    "cs": 13.5,
    "sk": 13.5,
    "sl": 13.5,
    "hr": 13.5,
    "bs": 13.5,
    "sr": 13.5,
    "hu": 13.5,
    "lt": 13.5,
    "lv": 13.5,
    "mt": 14.0,
    "cy": 14.0,
    "ga": 14.0,
    "eo": 14.5,
    "tr": 14.0,
    "id": 15.0,
    "ms": 15.0,
    "tl": 15.0,
    "sw": 14.5,
    "vi": 13.0,
    # Cyrillic and Greek.
    "ru": 14.0,
    "uk": 14.0,
    "be": 14.0,
    "bg": 14.0,
    "mk": 14.0,
    "kk": 13.5,
    "el": 14.0,
    # Abjads and abugidas: vowels often unwritten or fused, so fewer characters.
    "ar": 12.0,
    "fa": 12.0,
    "ur": 12.0,
    "he": 12.0,
    "hi": 13.0,
    "bn": 13.0,
    "ta": 12.0,
    "th": 11.0,
    # A syllable (or mora) per character.
    "ja": 7.0,
    "zh": 5.0,
    "ko": 7.5,
}


def chars_per_second(language: str) -> float:
    """Typical speaking rate in characters per second; `pt-BR` counts as `pt`, unknown codes get a default."""
    code = normalize(language)
    return CHARS_PER_SECOND.get(code, DEFAULT_CHARS_PER_SECOND) if code else DEFAULT_CHARS_PER_SECOND


def char_budget(seconds: float, language: str) -> int:
    """Characters a line in `language` can have to be spoken in `seconds` at a natural pace (at least 1)."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 1
    return max(1, math.floor(seconds * chars_per_second(language)))
