"""Small picklable values that cross the process-pool boundary and the job database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "confidence": self.confidence}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Word:
        conf = data.get("confidence")
        return cls(str(data["text"]), float(data["start"]), float(data["end"]), None if conf is None else float(conf))


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "words": [w.to_json() for w in self.words],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        return cls(
            int(data["id"]),
            float(data["start"]),
            float(data["end"]),
            str(data["text"]),
            tuple(Word.from_json(w) for w in data.get("words", ())),
        )


@dataclass(frozen=True, slots=True)
class Transcript:
    language: str
    duration: float
    segments: tuple[Segment, ...]
    engine: str
    model: str

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def to_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "duration": self.duration,
            "engine": self.engine,
            "model": self.model,
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transcript:
        return cls(
            str(data["language"]),
            float(data["duration"]),
            tuple(Segment.from_json(s) for s in data.get("segments", ())),
            str(data["engine"]),
            str(data["model"]),
        )


@dataclass(frozen=True, slots=True)
class SynthesizedClip:
    """A mono WAV at `path`; `duration` is measured after trimming, `rate` is the rate actually applied."""

    path: str
    duration: float
    rate: float
