# ruff: noqa: RUF001  (IPA letters look like ASCII ones: telling them apart is this module's work)
"""espeak-ng's IPA turned into Kokoro-82M's symbols, every symbol outside Kokoro's set handled on purpose.

Kokoro reads a fixed set of ~115 symbols (its `vocab.json`); espeak-ng writes a wider IPA. A symbol the model
does not know must never vanish unnoticed (Catalan `ʑ` in "metge", "platja" used to), so the mapping is
three tables, applied in order:

1. `TIED`: multi-letter phonemes espeak-ng writes tied ("t^ʃ") become Kokoro's one-symbol ligatures ("ʧ"),
   as Kokoro's own espeak front end (misaki) does; the diphthong letters (A, I, O, W, Y, Q) only for English,
   the one language whose training text used them.
2. `SUBSTITUTES`: each other symbol espeak-ng writes for the languages offered, with its nearest Kokoro symbol
   (or "" for a mark that carries nothing Kokoro can say, dropped by decision, with the reason beside it).
3. A combining diacritic Kokoro lacks is dropped (the sound it refines is kept); a precomposed letter is taken
   apart (NFD) into a base letter Kokoro knows plus marks; what is left after that is reported in
   `Mapped.unknown` (the engine logs it as `kokoro.unmapped_phoneme`), never silently lost.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field

from service.engines.offline.espeak_lib import TIE

# Tied sequences espeak-ng writes -> Kokoro's ligatures (consonants: every language).
TIED = {
    "t^ʃ": "ʧ", "d^ʒ": "ʤ", "t^s": "ʦ", "d^z": "ʣ",
    "d^ʑ": "ʤ",  # Catalan tg/tj ("metge", "platja") is /dʒ/; espeak-ng writes dʑ, which Kokoro lacks
    "t^ɕ": "ʧ",
}
# English diphthongs, as misaki spells them for Kokoro (other languages keep two vowels: their training data).
TIED_ENGLISH = {"a^ɪ": "I", "a^ʊ": "W", "e^ɪ": "A", "o^ʊ": "O", "ə^ʊ": "Q", "ɔ^ɪ": "Y"}

SUBSTITUTES = {
    "g": "ɡ",  # ASCII g: Kokoro knows only the IPA letter
    "ʑ": "ʒ",  # Catalan j/g ("junts", "gent") is /ʒ/
    "ɫ": "l",  # dark l (Catalan, Portuguese)
    "ɬ": "l",
    "ɭ": "l",
    "ɮ": "l",
    "ʀ": "ʁ",
    "ɺ": "ɾ",
    "ɦ": "h",
    "ħ": "h",
    "ʍ": "w",
    "ʷ": "w",
    "ɱ": "m",
    "ʐ": "ʒ",
    "ɧ": "ʃ",
    "ʕ": "ʔ",
    "ʏ": "y",
    "ɵ": "ø",
    "ɘ": "ə",
    "ɞ": "ɜ",
    "ɶ": "œ",
    "ʉ": "u",
    "ɓ": "b",
    "ɗ": "d",
    "ʙ": "b",
    "ˑ": "ː",  # half-long: long is the nearest
    "-": "",  # espeak-ng's mark of an unstressed clitic ("lə-"): no sound
    "\u0329": "",  # syllabic mark: Kokoro infers syllables
    "\u032f": "",  # non-syllabic mark (diphthong glide): the vowel is kept
    "\u032a": "",  # dental mark: the consonant is kept
    "\u0361": "",  # IPA tie bar (when espeak-ng writes one instead of ours): the letters are kept
    "‿": " ",  # linking mark between words
    "|": " ",
    "¿": "",  # Spanish opening marks: the closing "?" / "!" carries the intonation
    "¡": "",
    "«": "“",
    "»": "”",
    "'": "",
    "_": " ",
}

# Per language, after the ligatures: sounds the Japanese styles say too weakly for a listener, made more salient
# (bench/intelligibility.py measured each; docs/offline-voice.md has the figures). Regex -> replacement.
SALIENCE: dict[str, tuple[tuple[str, str], ...]] = {
    "fr": (
        # /ʁ/ after a voiceless consonant ("très", "prenons", "travaille") is devoiced in French, [χ]; the
        # styles dropped the voiced one there. Together with the next rule: WER 32.3 % -> 25.2 % (12 sentences).
        (r"(?<=[ptkfsʃ])ʁ", "χ"),
        # /y/ ("tu", "fuit") came out as /i/ or /u/; held longer it is heard as itself.
        (r"y(?!ː)", "yː"),
    ),
    "ca": (
        # espeak-ng writes the Catalan trill ("carrers", "rius", "roda") as tap + trill, "ɾr"; Kokoro said both,
        # heard as an extra syllable or a wrong word. The trill alone: WER 34.7 % -> 31.4 % on the 12 bench
        # sentences, 47.5 % -> 39.3 % on 6 fresh ones (jm_kumo).
        (r"ɾr", "r"),
    ),
}

# The punctuation Kokoro reads (pauses and intonation); text is cut at it and the marks put back between clauses.
PUNCTUATION = re.compile(r"([,;:.!?…—]+)")


@dataclass
class Mapped:
    symbols: str
    substituted: dict[str, str] = field(default_factory=dict)  # what was replaced, by what (for the logs)
    unknown: list[str] = field(default_factory=list)  # symbols with no Kokoro equivalent: reported, not spoken


def to_symbols(ipa: str, vocab: Collection[str], language: str) -> Mapped:
    """Kokoro's symbols for espeak-ng's (tied) IPA; see the module doc for the order of the tables."""
    tied = {**TIED, **(TIED_ENGLISH if language.split("-")[0] == "en" else {})}
    for old, new in tied.items():
        ipa = ipa.replace(old, new)
    ipa = ipa.replace(TIE, "")
    for pattern, replacement in SALIENCE.get(language.split("-")[0], ()):
        ipa = re.sub(pattern, replacement, ipa)
    result = Mapped("")
    out: list[str] = []
    for char in ipa:
        if char in vocab:
            out.append(char)
            continue
        if char in SUBSTITUTES:
            out.append(SUBSTITUTES[char])
            result.substituted[char] = SUBSTITUTES[char]
            continue
        if unicodedata.combining(char):  # a diacritic Kokoro lacks refines the sound before it, which is kept
            result.substituted[char] = ""
            continue
        decomposed = unicodedata.normalize("NFD", char)
        base, marks = decomposed[0], decomposed[1:]
        if base in vocab and all(m in vocab or m in SUBSTITUTES for m in marks):
            out.append(base + "".join(m if m in vocab else SUBSTITUTES[m] for m in marks))
            result.substituted[char] = out[-1]
            continue
        result.unknown.append(char)
    result.symbols = re.sub(r" {2,}", " ", "".join(out)).strip()
    return result


def clauses(text: str) -> list[tuple[str, str]]:
    """`text` cut at its punctuation: (words, the marks after them) pairs, marks possibly empty."""
    pieces = PUNCTUATION.split(" ".join(text.split()))
    pairs = []
    for index in range(0, len(pieces), 2):
        words = pieces[index].strip()
        marks = pieces[index + 1] if index + 1 < len(pieces) else ""
        if words or marks:
            pairs.append((words, marks))
    return pairs
