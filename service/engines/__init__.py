"""Offline speech engines: transcription (faster-whisper), translation (Apertium), synthesis (espeak-ng).

Each engine sits behind a Protocol in `protocols` so the pipeline can swap implementations.
"""

from service.engines.protocols import Synthesizer, Transcriber, Translator
from service.engines.types import Segment, SynthesizedClip, Transcript, Word
from service.errors import EngineError

__all__ = [
    "EngineError",
    "Segment",
    "SynthesizedClip",
    "Synthesizer",
    "Transcriber",
    "Transcript",
    "Translator",
    "Word",
]
