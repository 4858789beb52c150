"""Real human read speech with reference transcripts, from Debian packages only: English, and es/fr/it/ru.

Sources (nothing is downloaded at run time; install once with apt):

    apt-get install -y asterisk-core-sounds-en asterisk-core-sounds-en-g722 pocketsphinx-testdata

1. asterisk-core-sounds-en(-g722|-wav) 1.6.1: 568 IVR prompts read by Allison Smith, 25.5 min in total,
   CC-BY-SA-3.0 (credit: "Allison Smith / Digium"). Transcripts in
   /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ("name: text" per line). The -g722 variant is
   16 kHz wideband (preferred); the -wav one is 8 kHz.
2. pocketsphinx-testdata 0.8+5prealpha: 5 consecutive LibriVox utterances (Sense and Sensibility ch. 1, public
   domain audio, BSD-2 package), 24.7 s, 16 kHz, transcripts in .../librivox/transcription.

Prompts are short (median 2.6 s after filtering), so they are read one after another with pauses between them
(0.35-0.9 s, a longer 1.2-2 s breath every ~25 s of speech, fixed seed); the pauses are digital silence, the
prompts themselves studio-clean with trimmed edges. Single speaker (plus a second one in the LibriVox lines);
telephone-prompt style, not narrative. The audio is never committed: voices are built into a cache under the
temporary directory (`BENCH_INPUTS`, as `inputs.py`'s).

* `make_real_voice(seconds)`: one mono 48 kHz PCM_16 voice of exactly `seconds`, with the (start, end, text) of
  every prompt in it (an `inputs.VoiceInput`, like the generated voice), for jobs and word error rates.
* `load_real_speech(minutes)`: the original loader's clips of ~25 s (16 kHz WAV, reference text each).

Other languages (`language="es"`, "fr", "it" or "ru"): the same Asterisk prompt set read in that language, from
asterisk-core-sounds-<lang>(-g722) (es: Mexican Spanish, fr: Canadian French "June", it: "Carlo", ru: IvrvoiceRU;
CC-BY-SA-3.0 / the packages' copyright files), texts in /usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>
.txt.gz. No LibriVox lines. The Spanish texts are written without accents (as packaged); the Italian file starts with
a byte-order mark. About 15-20 minutes of multi-word prompts exist per language.

Needs the `ffmpeg` binary (raw G.722 has no header, so it is decoded with an explicit demuxer).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soundfile as sf

from . import RATE
from .inputs import INPUTS_DIR, VoiceInput

CREDIT = ("Allison Smith / Digium, CC-BY-SA-3.0 (Debian asterisk-core-sounds-en-g722); LibriVox, public domain "
          "(Debian pocketsphinx-testdata)")
SR = 16000
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
# Isolated words / letters / digits / silence: not read sentences, left out.
_SKIP_DIRS = {"digits", "letters", "phonetic", "silence"}
_VERSION = "2"  # bump to invalidate cached clips when the selection logic changes
_VOICE_VERSION = 1  # bump when make_real_voice changes
LANGUAGES = ("en", "es", "fr", "it", "ru")
_INSTALL = ("no speech found: apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-g722 "
            "pocketsphinx-testdata")


def _decode(path: Path, rate: int = SR) -> bytes:
    """Mono s16le PCM of an audio file at `rate` (raw G.722 needs an explicit demuxer)."""
    fmt = ["-f", "g722"] if path.suffix == ".g722" else []
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *fmt, "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
        capture_output=True, check=True,
    )
    return proc.stdout


def _clean(text: str) -> str:
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)  # stage directions: "(simple tone sound plays)", "[.]"
    text = text.replace("*", " star ").replace("#", " pound ")  # what the speaker actually says
    return re.sub(r"\s+", " ", text).strip()


def credit(language: str = "en") -> str:
    if language == "en":
        return CREDIT
    return (f"Debian asterisk-core-sounds-{language}-g722 (Digium / the packages' voice talent, CC-BY-SA-3.0; see "
            f"/usr/share/doc/asterisk-core-sounds-{language}/copyright)")


def _asterisk_source(language: str) -> tuple[Path, Path]:
    """The prompt folder and the text file of one language's Asterisk core sounds."""
    if language == "en":
        return ASTERISK_DIR, ASTERISK_TEXT
    if language not in LANGUAGES:
        raise ValueError(f"no real speech for {language!r}: one of {', '.join(LANGUAGES)}")
    return (Path(f"/usr/share/asterisk/sounds/{language}"),
            Path(f"/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz"))


def _asterisk_prompts(language: str = "en") -> list[tuple[str, Path, str]]:
    """(id, audio path, reference text) for every multi-word prompt installed in `language`."""
    folder, text_file = _asterisk_source(language)
    if not text_file.is_file() or not folder.is_dir():
        return []
    out, seen = [], set()
    with gzip.open(text_file, "rt", encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            m = re.match(r"^([^:;\s]+):\s*(.*)$", line.strip().lstrip("\ufeff"))
            if not m:
                continue
            name, raw = m.groups()
            if name.split("/")[0] in _SKIP_DIRS or raw.startswith("["):
                continue
            text = _clean(raw)
            key = re.sub(r"[^a-z0-9 ]" if language == "en" else r"[^\w ]", "", text.lower())
            if len(text.split()) < 2 or key in seen:  # single words; same text recorded twice
                continue
            audio = next((folder / f"{name}{ext}" for ext in (".g722", ".wav")
                          if (folder / f"{name}{ext}").is_file()), None)
            if audio is None:
                continue
            seen.add(key)
            out.append((name, audio, text))
    return out


def _librivox_utterances() -> list[tuple[str, Path, str]]:
    trans = LIBRIVOX_DIR / "transcription"
    if not trans.is_file():
        return []
    out = []
    for line in trans.read_text().splitlines():
        m = re.match(r"^<s>\s*(.*?)\s*</s>\s*\((\S+)\)$", line.strip())
        if m and (LIBRIVOX_DIR / f"{m.group(2)}.wav").is_file():
            out.append((m.group(2), LIBRIVOX_DIR / f"{m.group(2)}.wav", m.group(1)))
    return out


def _prompt_seconds(path: Path) -> float:
    """Length from the file size, cheap: G.722 is 8000 bytes a second, PCM16 8 kHz WAV 16000."""
    return path.stat().st_size / (8000.0 if path.suffix == ".g722" else 16000.0)


def _ordered(seed: int, language: str = "en") -> tuple[random.Random, list[tuple[str, Path, str]]]:
    """The LibriVox lines first (English only: consecutive sentences of one chapter), then the prompts in a
    seeded order."""
    rng = random.Random(seed)
    prompts = _asterisk_prompts(language)
    rng.shuffle(prompts)
    ordered = (_librivox_utterances() if language == "en" else []) + prompts
    if not ordered:
        raise RuntimeError(_INSTALL if language == "en" else
                           f"no speech found: apt-get install asterisk-core-sounds-{language} "
                           f"asterisk-core-sounds-{language}-g722")
    return rng, ordered


# ------------------------------------------------------------------------------ one long voice
def make_real_voice(seconds: float, seed: int = 0, folder: Path | None = None, language: str = "en") -> VoiceInput:
    """Mono 48 kHz PCM_16 real speech of exactly `seconds` in `language`, each prompt's (start, end, text) known.

    At most ~21 minutes (English) or ~15-20 minutes (es/fr/it/ru) of distinct prompts exist; a longer request
    raises `RuntimeError`.
    """
    tag = "" if language == "en" else f"_{language}"
    folder = folder or INPUTS_DIR / f"real_voice{tag}_{int(seconds)}s_seed{seed}_v{_VOICE_VERSION}"
    meta_path, wav_path = folder / "voice.json", folder / "voice.wav"
    if meta_path.is_file() and wav_path.is_file():
        meta = json.loads(meta_path.read_text())
        return VoiceInput(wav_path, meta["seconds"], tuple(tuple(x) for x in meta["lines"]))
    rng, ordered = _ordered(seed, language)
    folder.mkdir(parents=True, exist_ok=True)
    total = round(seconds * RATE)
    position = round(0.6 * RATE)
    lines: list[tuple[float, float, str]] = []
    since_breath = 0.0
    with sf.SoundFile(str(wav_path) + ".part", "w", RATE, 1, "PCM_16", format="WAV") as out:
        out.write(np.zeros(position, dtype=np.int16))
        for _name, path, text in ordered:
            if position + round((_prompt_seconds(path) + 0.5) * RATE) > total:
                if _prompt_seconds(path) > 8.0:
                    continue  # a long prompt that does not fit: a shorter one may
                break
            clip = np.frombuffer(_decode(path, RATE), dtype=np.int16)
            if clip.size == 0:
                continue
            if position + clip.size + round(0.5 * RATE) > total:
                break
            out.write(clip)
            lines.append((round(position / RATE, 4), round((position + clip.size) / RATE, 4), text))
            position += clip.size
            since_breath += clip.size / RATE
            pause = rng.uniform(1.2, 2.0) if since_breath >= 25.0 else rng.uniform(0.35, 0.9)
            since_breath = 0.0 if since_breath >= 25.0 else since_breath
            gap = min(round(pause * RATE), total - position)
            out.write(np.zeros(gap, dtype=np.int16))
            position += gap
        else:
            if position < 0.9 * total:
                raise RuntimeError(f"only {position / RATE:.0f} s of real speech available, {seconds:.0f} s asked")
        out.write(np.zeros(total - position, dtype=np.int16))
    os.replace(str(wav_path) + ".part", wav_path)
    meta_path.write_text(json.dumps({"seconds": seconds, "seed": seed, "language": language,
                                     "credit": credit(language), "lines": lines}, indent=1))
    return VoiceInput(wav_path, seconds, tuple(lines))


# ------------------------------------------------------------------------- the original loader's clips
def _write_clip(path: Path, pieces: list[bytes], pauses: list[float]) -> float:
    pcm = bytearray()
    for i, piece in enumerate(pieces):
        if i:
            pcm += b"\x00\x00" * int(pauses[i - 1] * SR)
        pcm += piece
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(bytes(pcm))
    os.replace(tmp, path)
    return len(pcm) / 2 / SR


def _duration(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def load_real_speech(target_minutes: float = 10.0, cache_dir: str | os.PathLike[str] | None = None,
                     clip_seconds: float = 25.0, seed: int = 0) -> list[tuple[str, str]]:
    """Clips of real read English speech and their reference transcripts, ~target_minutes in total.

    Returns [(path_to_16kHz_mono_wav, reference_text), ...]: the LibriVox clip (if pocketsphinx-testdata is
    installed) first, then Asterisk prompts in a fixed pseudo-random order, packed into ~`clip_seconds` clips.
    """
    rng = random.Random(seed)
    prompts = _asterisk_prompts()
    rng.shuffle(prompts)
    groups: list[list[tuple[str, Path, str]]] = []
    libri = _librivox_utterances()
    if libri:
        groups.append(libri)
    if not prompts and not groups:
        raise RuntimeError(_INSTALL)
    cache = Path(cache_dir or Path(tempfile.gettempdir()) / "real_speech_cache")
    cache.mkdir(parents=True, exist_ok=True)

    results: list[tuple[str, str]] = []
    total, target = 0.0, target_minutes * 60.0
    queue = list(prompts)
    while total < target and (groups or queue):
        if groups:
            group = groups.pop(0)
        else:  # fill one clip with prompts up to clip_seconds (sizes from file length, cheap)
            group, est = [], 0.0
            while queue and (not group or est < clip_seconds):
                length = _prompt_seconds(queue[0][1])
                if group and est + length > 1.5 * clip_seconds:
                    break  # a long prompt (up to 73 s) starts a clip of its own instead
                est += length + 0.6
                group.append(queue.pop(0))
        pauses = [round(rng.uniform(0.35, 0.9), 2) for _ in group[1:]]
        ident = "|".join(name for name, _, _ in group) + f"|{pauses}|{_VERSION}"
        path = cache / f"clip_{len(results):03d}_{hashlib.sha1(ident.encode()).hexdigest()[:10]}.wav"
        dur = _duration(path) if path.is_file() else _write_clip(path, [_decode(p) for _, p, _ in group], pauses)
        results.append((str(path), " ".join(text for _, _, text in group)))
        total += dur
    return results
