"""Speech engines: transcription, translation and synthesis, offline (faster-whisper, Apertium, espeak-ng)
or in the cloud (Deepgram, OpenAI).

Each engine sits behind a Protocol in `protocols`; `selection` picks one per stage from the settings.
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
