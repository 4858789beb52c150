"""Ducking: the background bed dips under the dubbed voice, and the ducked premix both feed the master.

Voice activity is measured per 10 ms hop; the gain envelope is one float per hop (about 3 MB per hour).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from service import cancellation
from service.audio import wavfiles
from service.audio.loudness import Loudness, StreamingLoudness

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


def premix(
    voice_path: str,
    background_path: str,
    out_path: str,
    total: int,
    channels: int,
    settings: MixSettings,
) -> tuple[Loudness, float, float]:
    """Write ducked background + voice as float WAV; return its loudness and the voice's and mix's sample peaks.

    The loudness is measured by an ffmpeg process fed from the same blocks, so
    it runs on the other core while numpy mixes. It is measured without true
    peak (the 4x true-peak meter would make that process the bottleneck of
    the pass); the returned loudness' ``true_peak_dbtp`` is therefore None.
    """
    sr = settings.sample_rate
    hop = max(1, round(HOP_SECONDS * sr))
    block = max(hop, round(settings.block_seconds * sr) // hop * hop)
    active = voice_activity(voice_path, total, hop, settings.activity_threshold_dbfs, block)
    gains_lin = 10.0 ** (duck_envelope(active, settings) / 20.0)
    centres = np.arange(gains_lin.shape[0], dtype=np.float64) * hop + hop / 2.0
    voice_peak = mix_peak = 0.0
    with (
        sf.SoundFile(background_path) as bg,
        sf.SoundFile(voice_path) as voice,
        wavfiles.open_for_write(out_path, sr, channels, total) as out,
        StreamingLoudness(sr, channels, true_peak=False) as meter,
    ):
        position = 0
        while position < total:
            cancellation.check()
            n = min(block, total - position)
            back = bg.read(n, dtype="float32", always_2d=True)
            if back.shape[0] < n:
                back = np.pad(back, ((0, n - back.shape[0]), (0, 0)))
            speech = voice.read(n, dtype="float32", always_2d=True)
            if speech.shape[0] < n:
                speech = np.pad(speech, ((0, n - speech.shape[0]), (0, 0)))
            if speech.shape[1] not in (1, channels):
                speech = speech.mean(axis=1, keepdims=True, dtype=np.float32)
            voice_peak = max(voice_peak, float(np.max(np.abs(speech))) if n else 0.0)
            h0 = position // hop
            h1 = min(gains_lin.shape[0], (position + n - 1) // hop + 2)
            samples = np.arange(position, position + n, dtype=np.float64)
            g = np.interp(samples, centres[h0:h1], gains_lin[h0:h1]).astype(np.float32)
            mixed = back * g[:, None] + speech
            if n:
                mix_peak = max(mix_peak, float(np.max(np.abs(mixed))))
            out.write(mixed)
            meter.feed(mixed)
            position += n
        loudness = meter.finish()
    return loudness, voice_peak, mix_peak

