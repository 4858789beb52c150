"""Ducking: the background bed dips under the dubbed voice.

Voice activity is measured per 10 ms hop; the gain curve reaches the full duck as speech starts (it looks
ahead by the attack time), holds across the gaps between words, and recovers after. The mixer hands the
curve to ffmpeg as a low-rate signal to multiply the bed by (`write_envelope`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from service.workpool import cancellation

if TYPE_CHECKING:
    from service.audio.mix import MixSettings

HOP_SECONDS = 0.010


def voice_activity(voice_path: str, total: int, hop: int, threshold_dbfs: float, block: int) -> np.ndarray:
    """Boolean per hop: is the (downmixed) voice louder than the threshold there?"""
    hops = -(-total // hop)
    active = np.zeros(hops, dtype=bool)
    threshold_ms = 10.0 ** (threshold_dbfs / 10.0)
    block = max(hop, block - block % hop)
    with sf.SoundFile(voice_path) as voice:
        position = 0
        while position < total:
            cancellation.check()
            data = voice.read(min(block, total - position), dtype="float32", always_2d=True)
            if data.shape[0] == 0:
                break
            mono = data.mean(axis=1, dtype=np.float32)
            whole = mono.shape[0] // hop
            first = position // hop
            if whole:
                ms = np.mean(np.square(mono[: whole * hop].reshape(whole, hop)), axis=1)
                active[first : first + whole] = ms > threshold_ms
            if mono.shape[0] % hop:
                tail = mono[whole * hop :]
                active[first + whole] = float(np.mean(np.square(tail))) > threshold_ms
            position += data.shape[0]
    return active


def duck_envelope(active: np.ndarray, settings: MixSettings) -> np.ndarray:
    """Per-hop background gain (dB): reaches ``duck_db`` as speech starts, recovers after it.

    Look-ahead equals the attack time (so the duck is complete at the onset),
    ``hold_ms`` bridges gaps between words, and the gain moves linearly in dB
    at the attack/release rates.
    """
    hops = active.shape[0]
    if hops == 0:
        return np.zeros(0, dtype=np.float64)
    hop_ms = HOP_SECONDS * 1000.0
    look = math.ceil(settings.attack_ms / hop_ms)
    hold = math.ceil(settings.hold_ms / hop_ms)
    counts = np.concatenate(([0], np.cumsum(active, dtype=np.int64)))
    idx = np.arange(hops)
    hi = np.minimum(idx + look + 1, hops)
    lo = np.maximum(idx - hold, 0)
    wanted = (counts[hi] - counts[lo]) > 0
    target = np.where(wanted, settings.duck_db, 0.0)
    depth = abs(settings.duck_db)
    down = depth * hop_ms / max(settings.attack_ms, hop_ms)
    up = depth * hop_ms / max(settings.release_ms, hop_ms)
    gains = np.empty(hops, dtype=np.float64)
    current = 0.0
    for h, goal in enumerate(target.tolist()):
        if goal < current:
            current = max(goal, current - down)
        elif goal > current:
            current = min(goal, current + up)
        gains[h] = current
    return gains


ENVELOPE_RATE = 1000  # samples a second of the gain curve handed to ffmpeg


def write_envelope(voice_path: str, total: int, settings: MixSettings, out_path: str) -> int:
    """The background's gain under the dub, as raw little-endian float32 at `ENVELOPE_RATE` (ffmpeg resamples
    it to the mix's rate and multiplies the bed by it). Returns the number of envelope samples written."""
    sr = settings.sample_rate
    hop = max(1, round(HOP_SECONDS * sr))
    block = max(hop, round(settings.block_seconds * sr) // hop * hop)
    gains = 10.0 ** (duck_envelope(voice_activity(voice_path, total, hop, settings.activity_threshold_dbfs, block),
                                   settings) / 20.0)
    count = math.ceil(total / sr * ENVELOPE_RATE)
    centres = (np.arange(gains.shape[0]) + 0.5) * hop / sr
    times = np.arange(count) / ENVELOPE_RATE
    curve = np.interp(times, centres, gains, left=gains[0] if gains.size else 1.0,
                      right=gains[-1] if gains.size else 1.0).astype("<f4")
    curve.tofile(out_path)
    return count
