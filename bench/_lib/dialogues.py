"""Dialogues of real recordings of different people, alternating turns, with the truth of who spoke when.

Each Debian Asterisk prompt set is read by one person: en (Allison Smith, female), fr (June, female,
Canadian French), it (Carlo, male), ru (IvrvoiceRU, female). The es set is Allison again (es_MX_f_Allison), so
it is never paired with en. A dialogue takes turns of 1-4 prompts of one voice (pauses 0.3-0.6 s inside a turn,
0.4-1.0 s between turns, fixed seed) until it reaches its length. Install once:

    apt-get install -y asterisk-core-sounds-{en,fr,it,ru}-g722
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .inputs import INPUTS_DIR
from .real_speech import _asterisk_prompts, _decode, _prompt_seconds

PEOPLE = {"en": "Allison (f)", "fr": "June (f)", "it": "Carlo (m)", "ru": "IvrvoiceRU (f)"}
_VERSION = 1


@dataclass(frozen=True)
class Dialogue:
    path: Path
    rate: int
    seconds: float
    # (start, end, voice, text) of every prompt, voice being the prompt set ("en", "it", ...)
    lines: tuple[tuple[float, float, str, str], ...]


def make_dialogue(voices: tuple[str, ...], seconds: float, seed: int = 0, rate: int = 16000,
                  folder: Path | None = None) -> Dialogue:
    """A WAV of about `seconds` where `voices` take turns (in a seeded order after the first round)."""
    folder = folder or INPUTS_DIR / f"dialogue_{'_'.join(voices)}_{int(seconds)}s_{rate}_seed{seed}_v{_VERSION}"
    meta_path, wav_path = folder / "dialogue.json", folder / "dialogue.wav"
    if meta_path.is_file() and wav_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Dialogue(wav_path, rate, meta["seconds"], tuple(tuple(x) for x in meta["lines"]))
    rng = random.Random(seed)
    prompts = {}
    for voice in voices:
        found = [p for p in _asterisk_prompts(voice) if 1.0 <= _prompt_seconds(p[1]) <= 8.0]
        if not found:
            raise RuntimeError(f"no prompts for {voice}: apt-get install asterisk-core-sounds-{voice}-g722")
        rng.shuffle(found)
        prompts[voice] = found
    folder.mkdir(parents=True, exist_ok=True)
    pieces: list[np.ndarray] = [np.zeros(int(0.5 * rate), dtype=np.int16)]
    position = 0.5
    lines: list[tuple[float, float, str, str]] = []
    order = list(voices)
    turn, previous = 0, None
    while position < seconds:
        if turn < len(order):
            voice = order[turn]
        else:
            voice = rng.choice([v for v in voices if v != previous] or list(voices))
        turn += 1
        previous = voice
        for k in range(rng.randint(1, 4)):
            if not prompts[voice]:
                break
            _, path, text = prompts[voice].pop()
            audio = np.frombuffer(_decode(path, rate), dtype=np.int16)
            if k:
                gap = rng.uniform(0.3, 0.6)
                pieces.append(np.zeros(int(gap * rate), dtype=np.int16))
                position += int(gap * rate) / rate
            lines.append((round(position, 3), round(position + len(audio) / rate, 3), voice, text))
            pieces.append(audio)
            position += len(audio) / rate
        gap = rng.uniform(0.4, 1.0)
        pieces.append(np.zeros(int(gap * rate), dtype=np.int16))
        position += int(gap * rate) / rate
        if all(not p for p in prompts.values()):
            break
    audio = np.concatenate(pieces)
    sf.write(str(wav_path), audio, rate, subtype="PCM_16")
    meta_path.write_text(json.dumps({"seconds": len(audio) / rate, "lines": lines}))
    return Dialogue(wav_path, rate, len(audio) / rate, tuple(lines))
