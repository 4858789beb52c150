"""Pitch-preserving time-stretch in-process: librubberband (the library ffmpeg's `rubberband` filter wraps)
through ctypes, in a process-pool worker.

Stretching one unit by starting ffmpeg cost ~120 ms of CPU, most of it the process start and the WAV round
trip; a 10-minute dub stretches about a hundred units, once per language. The library stretches the samples
already in memory, in offline mode (the whole clip is studied first) with its R3 ("finer") engine: the R2
engine ffmpeg's filter uses left stretched speech about 2 dB quieter than it came in (RMS ratio 0.78-0.82
on an espeak-ng line, 0.96 with R3), so stretched lines sounded softer than their neighbours.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import AudioError, ErrorCode

# rubberband-c.h: offline processing, the R3 engine, the high-quality pitch path; pitch is never shifted,
# so the formant and transient options (R2 only) do not matter.
_OPTION_PROCESS_OFFLINE = 0x00000000
_OPTION_PITCH_HIGH_QUALITY = 0x02000000
_OPTION_ENGINE_FINER = 0x20000000
_OPTIONS = _OPTION_PROCESS_OFFLINE | _OPTION_PITCH_HIGH_QUALITY | _OPTION_ENGINE_FINER
_BLOCK = 8192

_FLOAT_P = ctypes.POINTER(ctypes.c_float)
_FLOAT_PP = ctypes.POINTER(_FLOAT_P)


@functools.cache
def _library() -> Any:
    name = ctypes.util.find_library("rubberband") or "librubberband.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise AudioError(ErrorCode.STRETCH_FAILED, "librubberband is not installed (Debian: librubberband2)") from exc
    lib.rubberband_new.restype = ctypes.c_void_p
    lib.rubberband_new.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int, ctypes.c_double, ctypes.c_double]
    lib.rubberband_delete.argtypes = [ctypes.c_void_p]
    lib.rubberband_set_expected_input_duration.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.rubberband_set_max_process_size.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.rubberband_study.argtypes = [ctypes.c_void_p, _FLOAT_PP, ctypes.c_uint, ctypes.c_int]
    lib.rubberband_process.argtypes = [ctypes.c_void_p, _FLOAT_PP, ctypes.c_uint, ctypes.c_int]
    lib.rubberband_available.restype = ctypes.c_int
    lib.rubberband_available.argtypes = [ctypes.c_void_p]
    lib.rubberband_retrieve.restype = ctypes.c_uint
    lib.rubberband_retrieve.argtypes = [ctypes.c_void_p, _FLOAT_PP, ctypes.c_uint]
    return lib


def available() -> bool:
    try:
        _library()
    except AudioError:
        return False
    return True


def _channel(block: npt.NDArray[np.float32]) -> Any:
    return (_FLOAT_P * 1)(block.ctypes.data_as(_FLOAT_P))


def stretch(samples: npt.NDArray[np.float32], sample_rate: int, tempo: float) -> npt.NDArray[np.float32]:
    """Mono `samples` played `tempo` times faster (`tempo > 1` shortens), pitch kept."""
    lib = _library()
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    state = lib.rubberband_new(sample_rate, 1, _OPTIONS, 1.0 / tempo, 1.0)
    if not state:
        raise AudioError(ErrorCode.STRETCH_FAILED, "librubberband could not start")
    out: list[npt.NDArray[np.float32]] = []
    try:
        lib.rubberband_set_expected_input_duration(state, len(samples))
        lib.rubberband_set_max_process_size(state, _BLOCK)
        blocks = [samples[i: i + _BLOCK] for i in range(0, len(samples), _BLOCK)] or [samples]
        for n, block in enumerate(blocks):
            lib.rubberband_study(state, _channel(block), len(block), int(n == len(blocks) - 1))
        for n, block in enumerate(blocks):
            lib.rubberband_process(state, _channel(block), len(block), int(n == len(blocks) - 1))
            _drain(lib, state, out)
        _drain(lib, state, out)
    finally:
        lib.rubberband_delete(state)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _drain(lib: Any, state: int, out: list[npt.NDArray[np.float32]]) -> None:
    while (ready := lib.rubberband_available(state)) > 0:
        buffer = np.empty(ready, dtype=np.float32)
        got = lib.rubberband_retrieve(state, _channel(buffer), ready)
        out.append(buffer[:got])
