"""Where there is speech in a recording, two ways.

- `speech_regions`: Silero VAD (the ONNX model faster-whisper ships in its wheel, run offline), used to
  find the pauses the dub's units are cut at. Read in 5-minute windows so memory stays flat.
- `energy_activity`: a plain energy detector on 10 ms frames, used to *measure* sync on rendered audio
  (the dubbed voice stem against the source voice). Both sides go through the same detector, so the
  figure compares like with like and does not depend on a model.

Both run in the process pool on file paths.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from service.audio import ffmpeg

VAD_RATE = 16000
_WINDOW_SECONDS = 300.0

FRAME_SECONDS = 0.010
# A frame is speech when it is no more than this far below the recording's loud speech (its 95th
# percentile frame level) and clearly above its noise floor (its 10th percentile).
_BELOW_SPEECH_DB = 35.0
_ABOVE_FLOOR_DB = 10.0
_SILENCE_DBFS = -60.0
_EXTEND_SECONDS = 0.2
_HYSTERESIS_DB = 10.0
# Gaps between words shorter than this are bridged, and blips shorter than `_MIN_SPEECH` dropped, so a
# stretch of speech reads as one run on both sides of the comparison.
BRIDGE_SECONDS = 0.25
_MIN_SPEECH_SECONDS = 0.05


def speech_regions(path: str, min_silence_seconds: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) seconds of speech, separated by silences of at least `min_silence_seconds`."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=0.5, min_speech_duration_ms=120,
                         min_silence_duration_ms=round(min_silence_seconds * 1000), speech_pad_ms=30)
    duration = ffmpeg.duration_of(path)
    regions: list[tuple[float, float]] = []
    offset = 0.0
    while offset < duration - 0.01:
        samples = np.frombuffer(
            ffmpeg.read_samples(path, rate=VAD_RATE, start=offset, seconds=_WINDOW_SECONDS), dtype=np.float32)
        if samples.size == 0:
            break
        for found in get_speech_timestamps(samples, options):
            start, end = offset + found["start"] / VAD_RATE, offset + found["end"] / VAD_RATE
            if regions and start - regions[-1][1] < min_silence_seconds:  # runs on across the window edge
                regions[-1] = (regions[-1][0], end)
            else:
                regions.append((start, end))
        offset += _WINDOW_SECONDS
    return [(round(s, 3), round(e, 3)) for s, e in regions]


def frame_levels_db(path: str, rate: int = VAD_RATE) -> npt.NDArray[np.float64]:
    """RMS level of every 10 ms frame, in dBFS (mono mix).

    Read in windows of `_WINDOW_SECONDS` (a whole number of frames each): an hour decoded at once took
    ~700 MiB (the samples, and their squares in float64) for a result of 360,000 numbers.
    """
    hop = round(FRAME_SECONDS * rate)
    window_frames = round(_WINDOW_SECONDS / FRAME_SECONDS)
    duration = ffmpeg.duration_of(path)
    parts: list[npt.NDArray[np.float64]] = []
    offset_frames = 0
    while offset_frames * FRAME_SECONDS < duration - 0.005:
        samples = np.frombuffer(ffmpeg.read_samples(path, rate=rate, start=offset_frames * FRAME_SECONDS,
                                                    seconds=window_frames * FRAME_SECONDS), dtype=np.float32)
        frames = min(len(samples) // hop, window_frames)
        if frames == 0:
            break
        blocks = samples[: frames * hop].reshape(frames, hop)
        power = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / hop
        parts.append(10.0 * np.log10(np.maximum(power, 1e-12)))
        offset_frames += window_frames
    return np.concatenate(parts) if parts else np.zeros(0)


def _runs(active: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last + 1) frame indices of each run of True."""
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def energy_activity(path: str, bridge_seconds: float = BRIDGE_SECONDS) -> npt.NDArray[np.bool_]:
    """True for every 10 ms frame of speech, after bridging gaps up to `bridge_seconds` and dropping blips.

    Bridged, a stretch of speech reads as one run (speech-activity overlap); unbridged, the edges of each
    word stay where they are (a unit's first and last sound).
    """
    levels = frame_levels_db(path)
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    loud, floor = np.percentile(levels, 95), np.percentile(levels, 10)
    threshold = max(loud - _BELOW_SPEECH_DB, floor + _ABOVE_FLOOR_DB, _SILENCE_DBFS)
    # Hysteresis: a run found above the threshold extends over the quieter frames around it (a breathy
    # onset, a fading last syllable) while they stay clearly above the noise floor.
    quieter = max(floor + _ABOVE_FLOOR_DB / 2, threshold - _HYSTERESIS_DB, _SILENCE_DBFS)
    active = _extended(_without_blips(levels > threshold), levels > min(quieter, threshold))
    return bridged(active, bridge_seconds)


def _extended(active: npt.NDArray[np.bool_], allowed: npt.NDArray[np.bool_],
              reach: int = round(_EXTEND_SECONDS / FRAME_SECONDS)) -> npt.NDArray[np.bool_]:
    out = active.copy()
    for start, end in _runs(active):
        low = start
        while low > 0 and start - low < reach and allowed[low - 1]:
            low -= 1
        high = end
        while high < len(out) and high - end < reach and allowed[high]:
            high += 1
        out[low:high] = True
    return out


def bridged(active: npt.NDArray[np.bool_], seconds: float) -> npt.NDArray[np.bool_]:
    """`active` with gaps of up to `seconds` between runs filled in."""
    out = active.copy()
    bridge = round(seconds / FRAME_SECONDS)
    runs = _runs(out)
    for (_, gap_start), (gap_end, _) in itertools.pairwise(runs):
        if gap_end - gap_start <= bridge:
            out[gap_start:gap_end] = True
    return out


def _without_blips(active: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    shortest = round(_MIN_SPEECH_SECONDS / FRAME_SECONDS)
    for start, end in _runs(active):
        if end - start < shortest:
            active[start:end] = False
    return active


def runs_seconds(active: npt.NDArray[np.bool_]) -> list[tuple[float, float]]:
    """The active runs as (start, end) seconds."""
    return [(s * FRAME_SECONDS, e * FRAME_SECONDS) for s, e in _runs(active)]
