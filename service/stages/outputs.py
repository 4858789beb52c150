"""What each stage hands to the next, as typed records saved in the task's scratch directory.

A stage writes its output once, atomically, when it is done (`save`); the stages after it read it
back with `load(work_dir, Type)`. msgspec checks the shape on the way in, so a stage never guesses
at keys. The job's transcript and its units are shared by every language and live in the database
(`db/transcripts.py`), not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

import anyio
import msgspec

from service.stages.workfiles import write_bytes


class TranslatedUnit(msgspec.Struct):
    id: int
    start: float
    end: float
    group: int
    source_text: str
    text: str
    speaker: str | None = None


class Translation(msgspec.Struct):
    """The translating stage's output: every unit of the transcript, in the target language."""

    FILE: ClassVar[str] = "translation.json"
    source_language: str
    target_language: str
    engine: str
    units: list[TranslatedUnit]
    pivot: str | None = None  # the language the translation went through (no direct pair), e.g. "es"
    untranslated_words: int = 0  # words left in the source language (the translator did not know them)


class Clip(msgspec.Struct):
    """One unit spoken by the synthesizer: `duration` as synthesized at `rate` (the engine's own rate
    control); `natural_duration` is what it would last at rate 1."""

    id: int
    path: str
    text: str
    rate: float
    duration: float
    natural_duration: float
    shortened_from: str | None = None
    span: float | None = None  # the unit's span it was made to fit: a re-timed unit is spoken again
    voice: str | None = None  # the speaker's voice it was spoken with (None: the language's default)


class SpeakerEntry(msgspec.Struct):
    """A speaker as the manifest lists it: who, how long they speak, the voice they got and whether cloned."""

    id: str
    speech_seconds: float
    median_pitch: float | None
    engine: str
    voice: str
    chosen: str
    cloned: bool = False


class Synthesis(msgspec.Struct):
    """The dubbing stage's output."""

    FILE: ClassVar[str] = "synthesis.json"
    engine: str
    voice: str
    clips: list[Clip]
    speakers: list[SpeakerEntry] = msgspec.field(default_factory=list)


class PlacedUnit(msgspec.Struct):
    """A unit as it went into the voice track: where it starts and ends, and how it was made to fit."""

    id: int
    group: int
    source_text: str
    target_text: str
    source_start: float
    source_end: float
    next_start: float
    placed_start: float
    placed_end: float
    natural_duration: float
    rate: float
    stretch: float
    overflowed: bool
    cut_seconds: float
    shortened_from: str | None = None
    speaker: str | None = None

    @property
    def dubbed_duration(self) -> float:
        return round(self.placed_end - self.placed_start, 4)


class Mixdown(msgspec.Struct):
    """The mixing stage's output: the placed units, the mix's measured figures and the planned sync."""

    FILE: ClassVar[str] = "mixdown.json"
    units: list[PlacedUnit]
    mix: dict[str, object]
    planned_sync: dict[str, object]


class Fitted(msgspec.Struct):
    """A clip after the mixing stage's stretch: kept beside it, so a resumed stage reuses it."""

    source: str
    stretch: float
    path: str
    duration: float


Output = TypeVar("Output", Translation, Synthesis, Mixdown)
Piece = TypeVar("Piece", Clip, Fitted)


async def save_piece(path: Path, piece: Clip | Fitted) -> None:
    """A checkpoint inside a long stage (one clip): written when the clip is whole."""
    await write_bytes(path, msgspec.json.encode(piece))


async def load_piece(path: Path, kind: type[Piece]) -> Piece | None:
    """The checkpoint at `path`, or None when there is none (or it is unreadable)."""
    try:
        return msgspec.json.decode(await anyio.Path(path).read_bytes(), type=kind)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


async def save(work_dir: Path, output: Translation | Synthesis | Mixdown) -> None:
    await write_bytes(work_dir / output.FILE, msgspec.json.format(msgspec.json.encode(output), indent=1))


async def load(work_dir: Path, kind: type[Output]) -> Output:
    return msgspec.json.decode(await anyio.Path(work_dir / kind.FILE).read_bytes(), type=kind)


async def exists(work_dir: Path, kind: type[Translation | Synthesis | Mixdown]) -> bool:
    return await anyio.Path(work_dir / kind.FILE).exists()
