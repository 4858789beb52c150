"""Long inputs are transcribed window by window (memory stays flat): same words, right times."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.engines.offline import whisper
from service.sample import make_sample


def test_windows_cut_in_silence_and_keep_absolute_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = make_sample(tmp_path)
    model_dir = whisper.default_model_dir()
    assert model_dir is not None
    whole = whisper.transcribe_file(model_dir, str(sample.voice), "en")
    monkeypatch.setattr(whisper, "CHUNK_SECONDS", 4.0)
    monkeypatch.setattr(whisper, "_CUT_SEARCH_SECONDS", 1.5)
    windowed = whisper.transcribe_file(model_dir, str(sample.voice), "en")
    assert [s.id for s in windowed.segments] == list(range(len(windowed.segments)))
    starts = [w.start for s in windowed.segments for w in s.words]
    assert starts == sorted(starts)
    text = " ".join(s.text.lower() for s in windowed.segments)
    for word in ("welcome", "dubbing", "translated", "listening"):
        assert word in text
    # every word lies inside the speech the sample placed (with Whisper's usual slack)
    for segment in windowed.segments:
        assert any(start - 1.0 <= segment.start and segment.end <= end + 1.0 for start, end in sample.speech), segment
    assert abs(windowed.duration - whole.duration) < 0.1
