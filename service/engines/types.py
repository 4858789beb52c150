"""Small picklable values that cross the process-pool boundary and the job database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None
    # The recogniser heard this piece as the rest of the word before it, no space between ("-disposed" after
    # "ill"): text built from words joins the two without one.
    attached: bool = False


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    # Who speaks it ("S1", "S2", ... in order of first appearance) once speakers are told apart; None before.
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    language: str
    duration: float
    segments: tuple[Segment, ...]
    engine: str
    model: str
    # How sure the recogniser was of `language` when it detected it (0..1); None when the job named it.
    language_confidence: float | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def to_json(self) -> dict[str, Any]:
        """Its JSON object (segments and words as tuples, which json writes as arrays); the segments last, so a
        reader of transcript.json meets the header (language, duration, engine, model) first."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data["segments"] = data.pop("segments")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transcript:
        """Back from `to_json` (keys it does not know are passed over), checked against the fields' types."""
        return msgspec.convert(data, cls)


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    """A spoken language detected from the start of a recording: ISO 639-1 code and probability (0..1)."""

    language: str
    confidence: float


@dataclass(frozen=True, slots=True)
class SynthesizedClip:
    """A mono WAV at `path`; `duration` is measured after trimming, `rate` is the rate actually applied."""

    path: str
    duration: float
    rate: float
