"""Who speaks when, offline, on real recordings of different people taking turns: the count comes out right,
at most 10 % of the speech goes to the wrong speaker, the `num_speakers` hint is obeyed, and speakers are named
in order of first appearance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.audio import speakers
from service.audio.voice_activity import speech_regions
from tests.support import dialogue

pytestmark = pytest.mark.skipif(not dialogue.available("en", "fr", "it"),
                                reason="apt-get install asterisk-core-sounds-{en,fr,it}-g722 (just setup does)")


def diarized(path: Path, hint: int = 0) -> speakers.Diarization:
    return speakers.diarize(str(path), speech_regions(str(path), 0.3), hint)


@pytest.mark.parametrize("voices", [("en",), ("it", "en"), ("fr", "it", "en")], ids=["one", "two", "three"])
def test_speakers_are_told_apart(tmp_path: Path, voices: tuple[str, ...]) -> None:
    made = dialogue.make(tmp_path / "dialogue.wav", voices, 25.0 * len(voices))
    found = diarized(made.path)
    assert [p.id for p in found.speakers] == [f"S{i + 1}" for i in range(len(voices))]
    assert dialogue.error(made, [(t.start, t.end, t.speaker) for t in found.turns]) <= 0.10
    # S1 is whoever speaks first, S2 the next new voice.
    first = next(t for t in found.turns if t.end > made.turns[0][0])
    assert first.speaker == "S1"
    assert all(p.speech_seconds > 5 and p.median_pitch is not None for p in found.speakers)


def test_the_hint_fixes_the_count(tmp_path: Path) -> None:
    made = dialogue.make(tmp_path / "dialogue.wav", ("fr", "en"), 50.0)
    for hint in (2, 3):
        found = diarized(made.path, hint)
        assert len(found.speakers) == hint
    assert dialogue.error(made, [(t.start, t.end, t.speaker) for t in diarized(made.path, 2).turns]) <= 0.10


def test_pitch_of_a_voice_like_tone() -> None:
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 120 * t) + 0.2 * np.sin(2 * np.pi * 240 * t)).astype(np.float32)
    f0 = speakers.steady_pitch(speakers.pitch(tone))
    assert abs(float(np.median(f0)) - 120) < 3


def test_silence_and_nothing_to_cluster() -> None:
    found = speakers.diarize_samples(np.zeros(16000, np.float32), [], 0)
    assert found.speakers == () and found.turns == ()
