"""Real recorded speech with its reference text, and the word error rate to compare a transcript with it.

Debian's `pocketsphinx-testdata` (in the justfile's apt list) ships five LibriVox sentences from *Sense and
Sensibility*, read by a person: hyphenated words ("ill-disposed", "cold-hearted") a recogniser splits into
pieces, and a word ("prudently") Apertium does not know.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
# The book's words for each file (the package's own transcription spells the compounds without hyphens).
SENTENCES = (
    ("sense_and_sensibility_01_austen_64kb-0870.wav", "And Mr. John Dashwood had then leisure to consider how "
     "much there might be prudently in his power to do for them."),
    ("sense_and_sensibility_01_austen_64kb-0880.wav", "He was not an ill-disposed young man,"),
    ("sense_and_sensibility_01_austen_64kb-0890.wav", "unless to be rather cold-hearted and rather selfish is "
     "to be ill-disposed."),
    ("sense_and_sensibility_01_austen_64kb-0920.wav", "Had he married a more amiable woman, he might have been "
     "made still more respectable than he was;"),
    ("sense_and_sensibility_01_austen_64kb-0930.wav", "he might even have been made amiable himself."),
)
PAUSE_SECONDS = 0.8


def available() -> bool:
    return all((LIBRIVOX / name).is_file() for name, _ in SENTENCES)


def reading(out: Path, times: int = 1) -> str:
    """The five sentences (`times` over) as one recording at `out`, a short pause between them (about 27 s
    each time); returns its reference text."""
    pieces = []
    for name, _ in SENTENCES * times:
        audio, rate = soundfile.read(LIBRIVOX / name, dtype="float32")
        pieces += [audio, np.zeros(int(PAUSE_SECONDS * rate), dtype=np.float32)]
    soundfile.write(out, np.concatenate(pieces), rate, subtype="PCM_16")
    return " ".join(text for _, text in SENTENCES * times)


_SPOKEN = {"mr.": "mister", "mrs.": "missus", "dr.": "doctor"}


def words_of(text: str) -> list[str]:
    """Lower-case words without the punctuation around them; a hyphen inside a word stays ("ill-disposed"), a
    word broken before its hyphen ("ill -disposed") is two."""
    words = []
    for token in text.lower().split():
        token = _SPOKEN.get(token, token)
        word = re.sub(r"^[^\w]+|[^\w]+$", "", token)
        if word:
            words.append(word)
    return words


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance over words."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    return _distance(ref, hyp) / max(len(ref), 1)


def _distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, heard in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard)))
        previous = current
    return previous[-1]
