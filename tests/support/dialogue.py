"""Dialogues of real people taking turns, with the truth of who spoke when, for the speaker tests.

Each Debian Asterisk prompt set (in the justfile's apt list) is read by one person: `en` Allison (female),
`fr` June (female, Canadian French), `it` Carlo (male). Prompts of 1.5-6 s, in name order, are laid end to end
in turns of `per_turn` prompts of one voice (0.4 s inside a turn, 0.8 s between turns).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SOUNDS = Path("/usr/share/asterisk/sounds")
RATE = 16000


@dataclass(frozen=True)
class Dialogue:
    path: Path
    seconds: float
    turns: tuple[tuple[float, float, str], ...]  # (start, end, voice) of each prompt


def available(*voices: str) -> bool:
    return all(any((SOUNDS / v).glob("*.g722")) for v in voices)


def _decode(path: Path, rate: int) -> np.ndarray:
    form = ["-f", "g722"] if path.suffix == ".g722" else []
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *form, "-i", str(path), "-ac", "1", "-ar",
                          str(rate), "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.int16)


LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _prompts(voice: str) -> list[Path]:
    """The voice's prompts of 1.5-6 s (G.722 is 8000 bytes a second); `librivox`: the five LibriVox sentences
    of pocketsphinx-testdata (another reader, in English)."""
    if voice == "librivox":
        return sorted(LIBRIVOX.glob("*.wav"))
    return [p for p in sorted((SOUNDS / voice).glob("*.g722")) if 12_000 <= p.stat().st_size <= 48_000]


def make(out: Path, voices: tuple[str, ...], seconds: float, per_turn: int = 2, rate: int = RATE) -> Dialogue:
    """About `seconds` of `voices` taking turns in order (A B A B ... or A B C A B C ...), until `seconds` or
    until a voice has no prompt left."""
    queues = {v: _prompts(v) for v in voices}
    pieces: list[np.ndarray] = [np.zeros(int(0.5 * rate), np.int16)]
    at = 0.5
    turns: list[tuple[float, float, str]] = []
    turn = 0
    while at < seconds:
        voice = voices[turn % len(voices)]
        turn += 1
        if not queues[voice]:
            break
        for k in range(per_turn):
            if not queues[voice]:
                break
            audio = _decode(queues[voice].pop(0), rate)
            if k:
                pieces.append(np.zeros(int(0.4 * rate), np.int16))
                at += int(0.4 * rate) / rate
            turns.append((round(at, 3), round(at + len(audio) / rate, 3), voice))
            pieces.append(audio)
            at += len(audio) / rate
        pieces.append(np.zeros(int(0.8 * rate), np.int16))
        at += int(0.8 * rate) / rate
    audio = np.concatenate(pieces)
    soundfile.write(out, audio, rate, subtype="PCM_16")
    return Dialogue(out, len(audio) / rate, tuple(turns))


def error(dialogue: Dialogue, found: list[tuple[float, float, str]]) -> float:
    """Share of the speech (10 ms frames both sides call speech) given to the wrong speaker, after the best
    one-to-one mapping of found speakers to real ones."""
    import itertools

    frames = int(dialogue.seconds * 100) + 1
    voices = sorted({v for *_, v in dialogue.turns})
    names = sorted({s for *_, s in found})
    truth = np.full(frames, -1)
    guess = np.full(frames, -1)
    for start, end, voice in dialogue.turns:
        truth[int(start * 100): int(end * 100)] = voices.index(voice)
    for start, end, speaker in found:
        guess[int(start * 100): int(end * 100)] = names.index(speaker)
    both = (truth >= 0) & (guess >= 0)
    best = max(sum(int(np.sum(both & (truth == v) & (guess == perm[v]))) for v in range(len(voices)))
               for perm in itertools.permutations(range(max(len(names), len(voices))), len(voices)))
    return 1.0 - best / max(1, int(both.sum()))
