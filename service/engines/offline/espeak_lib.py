"""espeak-ng called in-process (libespeak-ng through ctypes), in a process-pool worker.

Starting `espeak-ng` and then `ffmpeg` for every line cost more than the speech itself (two processes,
their start-up, a temporary file); the library speaks into memory, numpy trims the silence espeak-ng pads
the clip with, soxr resamples it, and soundfile writes the WAV. The library is not thread-safe and keeps
global state: each pool worker initializes it once and runs one call at a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import numpy as np

from service.audio import speech_clip
from service.errors import EngineError, ErrorCode

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
DEFAULT_PITCH = 50
_ESPEAK_WORDGAP = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
# espeak_TextToPhonemes: IPA (bit 1), multi-letter phonemes tied (bit 7) by TIE (bits 8-23), e.g. "t^ʃ".
TIE = "^"
_PHONEMES_IPA_TIED = 0x02 | 0x80 | (ord(TIE) << 8)


class _Voice(ctypes.Structure):
    """espeak_VOICE: asking by language finds a voice whose name is not its language tag ("fr-fr")."""

    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class _Library:
    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as exc:
            raise EngineError(ErrorCode.ENGINE_MISSING, "libespeak-ng is not installed") from exc
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if self.rate <= 0:
            raise EngineError(ErrorCode.ENGINE_FAILED, "libespeak-ng could not be initialized")
        self.chunks: list[Any] = []
        self.callback = _CALLBACK(self._collect)  # kept referenced: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self.callback)
        self.voice: str | None = None

    def _collect(self, wav: Any, count: int, _events: Any) -> int:
        if count > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def select(self, voice: str) -> None:
        """Use `voice`: a voice name ("es") or, failing that, a language tag ("fr-fr", whose voice is "fr")."""
        if voice == self.voice:
            return
        if (self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK
                and self.lib.espeak_SetVoiceByProperties(ctypes.byref(_Voice(languages=voice.encode()))) != _EE_OK):
            raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"espeak-ng has no voice {voice!r}")
        self.voice = voice

    def phonemes(self, text: str, voice: str) -> list[str]:
        """The IPA of `text`, one string a clause (punctuation is not in it), multi-letter phonemes tied."""
        self.select(voice)
        buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        while pointer.value:
            clause = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA_TIED)
            if clause:
                clauses.append(clause.decode("utf-8", "replace"))
        return clauses

    def speak(self, text: str, voice: str, words_per_minute: int, word_gap: int = 0,
              pitch: int = DEFAULT_PITCH) -> Any:
        self.select(voice)
        self.lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        self.lib.espeak_SetParameter(_ESPEAK_WORDGAP, word_gap, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        data = text.encode("utf-8") + b"\0"
        self.chunks = []
        buffer = ctypes.create_string_buffer(data)
        if self.lib.espeak_Synth(buffer, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != _EE_OK:
            raise EngineError(ErrorCode.ENGINE_FAILED, "espeak-ng could not synthesize the line")
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        self.chunks = []
        return samples.astype(np.float32) / 32768.0


_library: _Library | None = None


def available() -> bool:
    try:
        _loaded()
    except EngineError:
        return False
    return True


def _loaded() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


def phonemes(text: str, voice: str) -> list[str]:
    """espeak-ng's IPA for `text` in `voice`, a string a clause (see `_Library.phonemes`)."""
    return _loaded().phonemes(text, voice)


def synthesize_file(text: str, voice: str, words_per_minute: int, sample_rate: int, out_path: str,
                    word_gap: int = 0, pitch: int = DEFAULT_PITCH) -> float:
    """Speak `text` into a mono 16-bit WAV at `sample_rate`; returns its duration in seconds. `word_gap` is
    espeak-ng's pause between words, in its units (see `espeak.word_gap_for`); `pitch` 0-100 (50 its own)."""
    library = _loaded()
    speech = speech_clip.trimmed(library.speak(text, voice, words_per_minute, word_gap, pitch), library.rate)
    if speech.size == 0:
        raise EngineError(ErrorCode.ENGINE_FAILED, "espeak-ng produced no audio for the line")
    return speech_clip.write_clip(speech, library.rate, sample_rate, out_path)
