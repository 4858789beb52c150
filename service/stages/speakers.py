"""Who speaks when, for the transcription stage: the recogniser's own speakers (Deepgram's `diarize=true`) or
the offline diarization in the process pool (`audio/speakers.py`), named S1, S2, ... in order of first
appearance, with each speaker's speech time and median pitch, and the transcript's segments marked with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from service.audio.speakers import Diarization, SpeakerProfile, SpeakerTurn
from service.engines.types import Transcript
from service.stages.units import Unit, speaker_at

Turns = list[tuple[float, float, str]]


def from_transcript(transcript: Transcript) -> Diarization | None:
    """The recogniser's speakers (when it names them), renamed S1, S2, ... in order of first appearance."""
    if not any(s.speaker for s in transcript.segments):
        return None
    names: dict[str, str] = {}
    turns: list[SpeakerTurn] = []
    seconds: dict[str, float] = {}
    for segment in sorted(transcript.segments, key=lambda s: (s.start, s.end)):
        if not segment.speaker:
            continue
        name = names.setdefault(segment.speaker, f"S{len(names) + 1}")
        turns.append(SpeakerTurn(segment.start, segment.end, name))
        seconds[name] = seconds.get(name, 0.0) + max(0.0, segment.end - segment.start)
    profiles = tuple(SpeakerProfile(name, round(seconds[name], 3), None) for name in names.values())
    return Diarization(tuple(turns), profiles)


def turns_of(found: Diarization) -> Turns:
    return [(t.start, t.end, t.speaker) for t in found.turns]


def mark_segments(transcript: Transcript, turns: Turns) -> Transcript:
    """The transcript with each segment's `speaker` the one who speaks most of it."""
    if not turns:
        return transcript
    segments = tuple(dataclasses.replace(s, speaker=speaker_at(turns, s.start, s.end)) for s in transcript.segments)
    return dataclasses.replace(transcript, segments=segments)


def profiles_json(found: Diarization, units: Sequence[Unit]) -> list[dict[str, Any]]:
    """The speakers that speak in some unit, as the transcript JSON and the manifest list them."""
    used = {u.speaker for u in units}
    return [{"id": p.id, "speech_seconds": p.speech_seconds, "median_pitch": p.median_pitch}
            for p in found.speakers if p.id in used]
