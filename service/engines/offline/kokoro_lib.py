"""Kokoro-82M run in a process-pool worker: text -> espeak-ng IPA -> Kokoro symbols -> onnxruntime -> WAV.

Each worker loads the ONNX session, the vocabulary and the voice styles once (`warm`, at start-up) and then
speaks one line a call, given file paths only. onnxruntime gets one thread per worker: the pool already has a
worker per core. The raw model peaks above full scale (1.35 measured) in over half the lines, so every clip is
brought to one speech level and then held under the true-peak ceiling (`levels`, `speech_clip.under_ceiling`)
before it is written.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from service.audio import speech_clip
from service.engines.offline import espeak_lib, kokoro_phonemes
from service.errors import EngineError, ErrorCode

MODEL_RATE = 24000
MAX_TOKENS = 510  # the styles have one row per token count up to this; the model's context too
# Kokoro's `speed` scales every duration; outside this range its prosody falls apart.
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# The longest pause `word_pause` puts between two phrases (`breaks_for`): more silence makes more phrases. A
# longer silence in a short line is heard as the line ending there (bench/sync_quality.py's detector bridges
# gaps under 0.25 s; a 0.27 s pause made a 1.32 s line count as 1.05 s of speech).
MAX_PHRASE_PAUSE = 0.18
MIN_PHRASE_PAUSE = 0.1  # shorter, a pause between phrases is not heard as one
# Phrases spoken apart that outlast the line are said at most this much faster (measured: "Bluetooth Móvil."
# took 1.15 s in one take, 1.52 s as two phrases; the mixing stage's stretch could not take the rest off).
MAX_PHRASE_SPEEDUP = 1.4
AUDIBLE_DB = -32.0  # a clip's edges quieter than this under its loudest 10 ms are cut (`audible`)
# Where the fades are cut: Spanish, measured harmless there (WER 4.9 % both ways) and its lines then land within
# ±10 % of their spans (84.2 -> 94.7 %, bench/sync_quality.py); Catalan lost final stops ("fosc" heard "fos";
# WER 29.8 -> 32.2 %), French was not heard differently but not timed: both keep their fades.
FADES_CUT = frozenset({"es"})
SPEECH_RMS_DBFS = -20.0  # every clip's speech level before the true-peak ceiling (speech_clip.write_clip)

log = structlog.get_logger(__name__)


@dataclass
class _Model:
    session: Any
    vocab: dict[str, int]
    styles: dict[str, npt.NDArray[np.float32]]


_models: dict[str, _Model] = {}


def _load(model_dir: str) -> _Model:
    model = _models.get(model_dir)
    if model is None:
        import onnxruntime

        folder = Path(model_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(str(folder / "kokoro.onnx"), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise EngineError(ErrorCode.MODEL_CORRUPT, f"Kokoro model could not be loaded: {exc}") from exc
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(folder / "voices_ja.npz") as npz:
            styles = {name: np.asarray(npz[name], dtype=np.float32).reshape(-1, 256) for name in npz.files}
        model = _models[model_dir] = _Model(session, vocab, styles)
    return model


def warm(model_dir: str) -> int:
    """Load the model in this worker (start-up), and speak one word so the first real line pays nothing."""
    model = _load(model_dir)
    _infer(model, [model.vocab["a"]], next(iter(model.styles)), 1.0)
    return os.getpid()


def symbols(text: str, language: str, espeak_voice: str, vocab: dict[str, int]) -> str:
    """Kokoro's symbols for `text`: each clause through espeak-ng, mapped, with its punctuation kept."""
    spoken: list[str] = []
    for words, marks in kokoro_phonemes.clauses(text):
        ipa = " ".join(espeak_lib.phonemes(words, espeak_voice)) if words else ""
        mapped = kokoro_phonemes.to_symbols(ipa, vocab, language)
        if mapped.unknown:
            log.warning("kokoro.unmapped_phoneme", language=language, symbols=sorted(set(mapped.unknown)))
        spoken.append(mapped.symbols + "".join(m for m in marks if m in vocab))
    return " ".join(s for s in spoken if s)


def _chunks(phonemes: str, limit: int) -> list[str]:
    """Pieces of at most `limit` symbols, cut after punctuation, else at a space."""
    pieces: list[str] = []
    rest = phonemes
    while len(rest) > limit:
        head = rest[:limit]
        cut = max(head.rfind(mark) for mark in ",;:.!?") + 1 or head.rfind(" ") + 1 or limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _infer(model: _Model, tokens: list[int], style: str, speed: float) -> npt.NDArray[np.float32]:
    reference = model.styles[style][min(len(tokens), MAX_TOKENS) - 1]
    audio = model.session.run(None, {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": reference.reshape(1, 256),
        "speed": np.array([speed], dtype=np.float32),
    })[0]
    return np.asarray(audio, dtype=np.float32).ravel()


def levels(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float32]:
    """`samples` at one speech level (RMS of the voiced part), then scaled under the true-peak ceiling."""
    if samples.size == 0:
        return samples
    voiced = samples[np.abs(samples) > speech_clip.SILENCE * 10]
    rms = float(np.sqrt(np.mean(np.square(voiced, dtype=np.float64)))) if voiced.size else 0.0
    gain = 10 ** (SPEECH_RMS_DBFS / 20) / rms if rms > 0 else 1.0
    return speech_clip.under_ceiling((samples * gain).astype(np.float32), rate)


def phrases(text: str, breaks: int) -> list[str]:
    """`text` cut into `breaks + 1` groups of words (fewer if it has fewer words): after its punctuation first,
    then where the groups come out most even in letters, avoiding a cut just after a short word (an article or
    preposition belongs with what follows it)."""
    words = text.split()
    breaks = min(breaks, len(words) - 1)
    if breaks <= 0:
        return [" ".join(words)] if words else []
    ends = np.cumsum([len(w) + 1 for w in words])  # letters up to the end of each word
    total = float(ends[-1])
    chosen: set[int] = set()  # cut after word i
    for k in range(1, breaks + 1):
        ideal = total * k / (breaks + 1)

        def cost(i: int, ideal: float = ideal) -> float:
            after_mark = words[i][-1] in ",;:.!?…—"
            short = len(words[i].strip(",;:.!?…—«»\"'")) <= 3
            return abs(float(ends[i]) - ideal) - (total if after_mark else 0.0) + (0.25 * total if short else 0.0)

        chosen.add(min((i for i in range(len(words) - 1) if i not in chosen), key=cost))
    groups, start = [], 0
    for i in sorted(chosen):
        groups.append(" ".join(words[start:i + 1]))
        start = i + 1
    groups.append(" ".join(words[start:]))
    return groups


def breaks_for(word_pause: float, words: int) -> tuple[int, float]:
    """How a line pauses to fill `word_pause` seconds between each of its words: Kokoro cannot pause between
    words within one take, and a pause after every word sounds like dictation, so the same total silence goes
    into as few pauses as `MAX_PHRASE_PAUSE` allows, between phrases (no longer than that: a line with too few
    words for its silence stays short). Returns (pauses, seconds each)."""
    gaps = max(words - 1, 0)
    total = word_pause * gaps
    if total <= 0:
        return 0, 0.0
    count = min(gaps, max(1, math.ceil(total / MAX_PHRASE_PAUSE)))
    return count, min(total / count, MAX_PHRASE_PAUSE)


def audible(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float32]:
    """`samples` without the leading and trailing stretches more than `AUDIBLE_DB` under the loudest 10 ms
    (20 ms of them kept): Kokoro fades a line out over ~0.1-0.3 s, which a fixed silence threshold keeps and
    a listener (and bench/sync_quality.py's detector, 35 dB under the speech) does not hear as speech, so a
    line fitted to its span was heard up to 20 % short."""
    frame = rate // 100
    count = samples.size // frame
    if count == 0:
        return samples
    rms = np.sqrt(np.mean(np.square(samples[:count * frame].reshape(count, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (AUDIBLE_DB / 20))
    keep = round(speech_clip.KEEP_SECONDS * rate)
    return samples[max(int(loud[0]) * frame - keep, 0): min((int(loud[-1]) + 1) * frame + keep, samples.size)]


def _spoken(model: _Model, text: str, language: str, espeak_voice: str, style: str,
            speed: float) -> npt.NDArray[np.float32]:
    phonemes = symbols(text, language, espeak_voice, model.vocab)
    pieces = []
    for chunk in _chunks(phonemes, MAX_TOKENS - 2):
        tokens = [model.vocab[s] for s in chunk if s in model.vocab]
        if tokens:
            piece = speech_clip.trimmed(_infer(model, tokens, style, speed), MODEL_RATE)
            pieces.append(audible(piece, MODEL_RATE) if language in FADES_CUT else piece)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def synthesize_file(text: str, language: str, espeak_voice: str, style: str, speed: float, sample_rate: int,
                    out_path: str, model_dir: str, word_pause: float = 0.0,
                    lasting: float | None = None) -> float:
    """Speak `text` with Kokoro style `style` at `speed` into a mono 16-bit WAV at `sample_rate`; returns its
    duration in seconds. `word_pause` > 0: the line is spoken in phrases (`breaks_for`, `phrases`), each but
    the last ending on a comma's rising tone, with silence between them: `word_pause` per word gap, or, given
    `lasting` (seconds the paused line should last), whatever makes it last that, at least `MIN_PHRASE_PAUSE`
    (phrases spoken apart last longer than inside the line: ~0.2-0.3 s a cut, measured); if even then they
    would outlast it, they are spoken again faster (up to `MAX_PHRASE_SPEEDUP`)."""
    import soxr

    model = _load(model_dir)
    if style not in model.styles:
        raise EngineError(ErrorCode.BAD_INPUT, f"Kokoro has no style {style!r}; it has {sorted(model.styles)}")
    speed = min(max(speed, MIN_SPEED), MAX_SPEED)
    count, pause = breaks_for(word_pause, len(text.split()))
    groups = phrases(text, count)
    said = [group if number == len(groups) - 1 or group[-1] in ",;:.!?…—" else group + ","
            for number, group in enumerate(groups)]
    spoken = [piece for piece in (_spoken(model, g, language, espeak_voice, style, speed) for g in said) if piece.size]
    if lasting is not None and len(spoken) > 1:
        speaking = sum(piece.size for piece in spoken) / MODEL_RATE
        room = lasting - MIN_PHRASE_PAUSE * (len(spoken) - 1)
        if speaking > room > 0:  # apart, the phrases outlast the line even with the shortest pauses: say them faster
            faster = min(speed * min(speaking / room, MAX_PHRASE_SPEEDUP), MAX_SPEED)
            spoken = [p for p in (_spoken(model, g, language, espeak_voice, style, faster) for g in said) if p.size]
            speaking = sum(piece.size for piece in spoken) / MODEL_RATE
        pause = min(max(MIN_PHRASE_PAUSE, (lasting - speaking) / (len(spoken) - 1)), MAX_PHRASE_PAUSE)
    silence = np.zeros(round(pause * MODEL_RATE), dtype=np.float32)
    pieces: list[npt.NDArray[np.float32]] = []
    for piece in spoken:
        pieces.extend([silence, piece] if pieces else [piece])
    speech = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if speech.size == 0:
        raise EngineError(ErrorCode.ENGINE_FAILED, "Kokoro produced no audio for the line")
    if sample_rate != MODEL_RATE:
        speech = np.asarray(soxr.resample(speech, MODEL_RATE, sample_rate), dtype=np.float32)
    return speech_clip.write_clip(levels(speech, sample_rate), sample_rate, sample_rate, out_path)
