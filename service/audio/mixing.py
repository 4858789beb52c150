"""Voice-track assembly, ducking, loudness normalisation and deliverable encoding.

Everything is streamed: numpy touches at most one block (1 s by default) of
audio at a time, ffmpeg streams the rest, so memory stays flat for any
length. The only state that grows with length is the ducking envelope, one
float per 10 ms hop (about 3 MB per hour of audio).

Public functions take paths and plain values and return small frozen
dataclasses, so they can run in a ``ProcessPoolExecutor`` worker.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf

from service.audio.decode import (
    DEFAULT_SAMPLE_RATE,
    audio_info,
    decode_to_wav,
    partial_path,
    run_ffmpeg,
)
from service.audio.fitting import FADE_OUT_S
from service.audio.loudness import Loudness, StreamingLoudness, measure_loudness, parse_ebur128_summary

Float32Array = npt.NDArray[np.float32]

HOP_SECONDS = 0.010
# Render the limiter this far under the ceiling: resampling back from 4x can add a little overshoot.
LIMITER_HEADROOM_DB = 0.5
# Loudness error we accept before re-rendering with a corrected gain (the test tolerance is 1 LU).
LOUDNESS_TOLERANCE_LU = 0.5
MAX_CORRECTIONS = 2
_WAV_LIMIT_BYTES = 0xFFFF_FFFF - 1_000_000


@dataclass(frozen=True)
class PlacedClip:
    """A fitted clip: where it starts on the output timeline and how much of it may play."""

    path: str
    placed_start: float
    max_duration: float = math.inf


@dataclass(frozen=True)
class MixSettings:
    """Knobs of the final mix. Duck depth/times apply to the background under dubbed speech."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    duck_db: float = -12.0
    attack_ms: float = 80.0
    release_ms: float = 400.0
    hold_ms: float = 200.0
    activity_threshold_dbfs: float = -50.0
    target_lufs: float = -16.0
    true_peak_dbtp: float = -1.0
    web_format: Literal["mp3", "opus"] = "mp3"
    mp3_bitrate: str = "192k"
    opus_bitrate: str = "128k"
    block_seconds: float = 1.0
    limiter_attack_ms: float = 5.0
    limiter_release_ms: float = 100.0


@dataclass(frozen=True)
class MixResult:
    """Figures measured on the written master (and stem) after the fact; ``None`` means silence."""

    duration: float
    frames: int
    sample_rate: int
    channels: int
    integrated_lufs: float | None
    true_peak_dbtp: float | None
    lra: float
    gain_db: float
    limited: bool
    premix_integrated_lufs: float | None
    stem_integrated_lufs: float | None
    stem_true_peak_dbtp: float | None
    master_path: str
    web_path: str
    stem_path: str
    corrections: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- voice track


@dataclass
class _ClipCursor:
    """Read state of one clip while its frames are being laid down."""

    handle: sf.SoundFile
    start: int
    limit: int
    fade_from: int  # clip-relative frame where the fade-out starts; == limit means no fade
    pos: int = 0


def _open_wav_for_write(path: str, sample_rate: int, channels: int, frames: int) -> sf.SoundFile:
    """Float WAV, switching to RF64 when a plain WAV header could not describe the size."""
    fmt = "RF64" if frames * channels * 4 > _WAV_LIMIT_BYTES else "WAV"
    return sf.SoundFile(path, mode="w", samplerate=sample_rate, channels=channels, subtype="FLOAT", format=fmt)


def _resolve(path: str, sample_rate: int, work_dir: str, name: str) -> str:
    """Path of a WAV at ``sample_rate`` holding ``path``'s audio (the original if already fine)."""
    try:
        info = audio_info(path)
        if info.sample_rate == sample_rate and info.frames > 0:
            return path
    except (sf.LibsndfileError, RuntimeError):
        pass
    out = os.path.join(work_dir, f"{name}.wav")
    decode_to_wav(path, out, sample_rate=sample_rate)
    return out


def build_voice_track(
    clips: Sequence[PlacedClip],
    total_duration: float,
    out_path: str,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> str:
    """Write a mono float WAV of exactly ``round(total_duration * sample_rate)`` frames.

    Each clip starts at ``placed_start``; a clip longer than ``max_duration``
    (or the track) is cut with a ~20 ms fade-out. Overlapping clips add.
    Clips at another rate are resampled by ffmpeg first. Returns ``out_path``.
    """
    total = round(total_duration * sample_rate)
    if total <= 0:
        raise ValueError(f"total_duration must be positive, got {total_duration}")
    block = max(1, sample_rate)
    fade = max(1, round(FADE_OUT_S * sample_rate))
    out_dir = os.path.dirname(os.path.abspath(out_path))
    tmp = partial_path(out_path)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".voice-") as work_dir:
        plan: list[tuple[int, int, int, str]] = []  # start, limit, fade_from, path
        for n, clip in enumerate(clips):
            start = round(clip.placed_start * sample_rate)
            if start >= total or clip.max_duration <= 0:
                continue
            path = _resolve(clip.path, sample_rate, work_dir, f"clip{n}")
            frames = audio_info(path).frames
            allowed = total - max(start, 0)
            if math.isfinite(clip.max_duration):
                allowed = min(allowed, round(clip.max_duration * sample_rate))
            limit = min(frames, allowed)
            if limit <= 0:
                continue
            fade_from = max(0, limit - fade) if frames > limit else limit
            plan.append((start, limit, fade_from, path))
        plan.sort(key=lambda item: item[0])

        active: list[_ClipCursor] = []
        next_clip = 0
        with _open_wav_for_write(tmp, sample_rate, 1, total) as out:
            for block_start in range(0, total, block):
                n = min(block, total - block_start)
                buf = np.zeros(n, dtype=np.float32)
                while next_clip < len(plan) and plan[next_clip][0] < block_start + n:
                    start, limit, fade_from, path = plan[next_clip]
                    cursor = _ClipCursor(sf.SoundFile(path), start, limit, fade_from)
                    if start < 0:  # clip placed before zero: skip its head
                        cursor.pos = min(-start, limit)
                        cursor.handle.seek(cursor.pos)
                    active.append(cursor)
                    next_clip += 1
                for cursor in list(active):
                    _add_clip_block(cursor, buf, block_start, fade)
                    if cursor.pos >= cursor.limit:
                        cursor.handle.close()
                        active.remove(cursor)
                out.write(buf)
        for cursor in active:
            cursor.handle.close()
    os.replace(tmp, out_path)
    return out_path


def _add_clip_block(cursor: _ClipCursor, buf: Float32Array, block_start: int, fade: int) -> None:
    """Add the part of ``cursor``'s clip that falls into ``buf`` (which starts at ``block_start``)."""
    offset = max(0, cursor.start + cursor.pos - block_start)
    want = min(len(buf) - offset, cursor.limit - cursor.pos)
    if want <= 0:
        return
    data = cursor.handle.read(want, dtype="float32", always_2d=True)
    got = data.shape[0]
    if got == 0:
        cursor.pos = cursor.limit  # file shorter than its header said: treat as ended
        return
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if cursor.fade_from < cursor.limit:
        idx = np.arange(cursor.pos, cursor.pos + got)
        ramp = np.clip((cursor.limit - idx) / fade, 0.0, 1.0).astype(np.float32)
        mono = mono * ramp
    buf[offset : offset + got] += mono
    # A short read means the file ended before its header said: the clip is done.
    cursor.pos = cursor.pos + got if got == want else cursor.limit


# --------------------------------------------------------------------------- ducking


def _voice_activity(voice_path: str, total: int, hop: int, threshold_dbfs: float, block: int) -> np.ndarray:
    """Boolean per hop: is the (downmixed) voice louder than the threshold there?"""
    hops = -(-total // hop)
    active = np.zeros(hops, dtype=bool)
    threshold_ms = 10.0 ** (threshold_dbfs / 10.0)
    block = max(hop, block - block % hop)
    with sf.SoundFile(voice_path) as voice:
        position = 0
        while position < total:
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


def _premix(
    voice_path: str,
    background_path: str,
    out_path: str,
    total: int,
    channels: int,
    settings: MixSettings,
) -> tuple[Loudness, float]:
    """Write ducked background + voice as float WAV; return its loudness and the voice's sample peak.

    The loudness is measured by an ffmpeg process fed from the same blocks, so
    it runs on the other core while numpy mixes.
    """
    sr = settings.sample_rate
    hop = max(1, round(HOP_SECONDS * sr))
    block = max(hop, round(settings.block_seconds * sr) // hop * hop)
    active = _voice_activity(voice_path, total, hop, settings.activity_threshold_dbfs, block)
    gains_lin = 10.0 ** (duck_envelope(active, settings) / 20.0)
    centres = np.arange(gains_lin.shape[0], dtype=np.float64) * hop + hop / 2.0
    voice_peak = 0.0
    with (
        sf.SoundFile(background_path) as bg,
        sf.SoundFile(voice_path) as voice,
        _open_wav_for_write(out_path, sr, channels, total) as out,
        StreamingLoudness(sr, channels) as meter,
    ):
        position = 0
        while position < total:
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
            out.write(mixed)
            meter.feed(mixed)
            position += n
        loudness = meter.finish()
    return loudness, voice_peak


# --------------------------------------------------------------------------- rendering


def _db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def _render(
    src: str,
    dst: str,
    gain_db: float,
    limit: bool,
    frames: int,
    settings: MixSettings,
    quick_measure: bool = False,
) -> float | None:
    """Apply one gain (and, if asked, a 4x-oversampled limiter), write PCM_24 of exactly ``frames``.

    With ``quick_measure`` the same graph also feeds an ``ebur128`` branch and
    the integrated loudness of what was written is returned (None for
    silence): cheap enough to decide whether a corrective render is needed.
    """
    sr = settings.sample_rate
    chain = [f"volume={gain_db:.4f}dB:precision=float"]
    if limit:
        ceiling = 10.0 ** ((settings.true_peak_dbtp - LIMITER_HEADROOM_DB) / 20.0)
        chain += [
            f"aresample={4 * sr}:resampler=soxr",
            f"alimiter=limit={max(ceiling, 0.0625):.6f}:attack={settings.limiter_attack_ms}"
            f":release={settings.limiter_release_ms}:level=false:latency=true",
            f"aresample={sr}:resampler=soxr",
        ]
    chain += [f"apad=whole_len={frames}", f"atrim=end_sample={frames}"]
    tmp = partial_path(dst)
    output = ["-ar", str(sr), "-c:a", "pcm_s24le", "-rf64", "auto", "-f", "wav", tmp]
    if quick_measure:
        graph = f"[0:a:0]{','.join(chain)},asplit=2[out][probe];[probe]ebur128=framelog=verbose[probed]"
        args = ["-loglevel", "info", "-i", src, "-filter_complex", graph, "-map", "[out]", *output]
        args += ["-map", "[probed]", "-f", "null", "-"]
    else:
        args = ["-i", src, "-map", "0:a:0", "-af", ",".join(chain), *output]
    stderr = _run_to(tmp, dst, args)
    if not quick_measure:
        return None
    return parse_ebur128_summary(stderr).integrated_lufs


def _encode_web(master: str, dst: str, settings: MixSettings) -> None:
    """Compressed web copy of the final master (mp3 via libmp3lame, or Ogg Opus)."""
    if settings.web_format == "mp3":
        codec = ["-c:a", "libmp3lame", "-b:a", settings.mp3_bitrate, "-f", "mp3"]
    elif settings.web_format == "opus":
        codec = ["-c:a", "libopus", "-b:a", settings.opus_bitrate, "-f", "opus"]
    else:
        raise ValueError(f"unknown web format {settings.web_format!r}")
    tmp = partial_path(dst)
    _run_to(tmp, dst, ["-i", master, "-map", "0:a:0", *codec, tmp])


def _run_to(tmp: str, dst: str, args: list[str]) -> str:
    """Run ffmpeg writing ``tmp``; move it to ``dst`` on success, remove it on failure."""
    try:
        stderr = run_ffmpeg(args)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, dst)
    return stderr


def _needs_limiter(peak_db: float | None, gain_db: float, settings: MixSettings) -> bool:
    """Predicted true peak after gain would come within headroom of the ceiling (or unknown)."""
    if peak_db is None:
        return False
    return peak_db + gain_db > settings.true_peak_dbtp - LIMITER_HEADROOM_DB


def _normalise(src: str, measured: Loudness, dst: str, frames: int, settings: MixSettings) -> tuple[float, bool, int]:
    """Render ``src`` to ``dst`` at target loudness, limiting if the true peak demands it.

    The limiter lowers loudness a little; if the in-graph measurement misses
    the target by more than `LOUDNESS_TOLERANCE_LU`, render again with the
    gain corrected. Returns (gain in dB, limiter used, corrective renders).
    """
    if measured.integrated_lufs is None:  # silence: nothing to aim at, copy through
        _render(src, dst, 0.0, False, frames, settings)
        return 0.0, False, 0
    gain_db = settings.target_lufs - measured.integrated_lufs
    limited = _needs_limiter(measured.true_peak_dbtp, gain_db, settings)
    corrections = 0
    previous: tuple[float, float] | None = None  # (gain, achieved) of the last render
    while True:
        achieved = _render(src, dst, gain_db, limited, frames, settings, quick_measure=True)
        if achieved is None or corrections >= MAX_CORRECTIONS:
            return gain_db, limited, corrections
        miss = settings.target_lufs - achieved
        if abs(miss) <= LOUDNESS_TOLERANCE_LU:
            return gain_db, limited, corrections
        # Under a limiter 1 dB of gain buys less than 1 LU: follow the measured slope (secant step).
        slope = 1.0
        if previous is not None and abs(gain_db - previous[0]) > 1e-3:
            slope = min(1.0, max(0.25, (achieved - previous[1]) / (gain_db - previous[0])))
        previous = (gain_db, achieved)
        gain_db += miss / slope
        limited = limited or _needs_limiter(measured.true_peak_dbtp, gain_db, settings)
        corrections += 1


def mix(
    voice_path: str,
    background_path: str | None,
    out_master_wav: str,
    out_web: str,
    out_stem: str,
    settings: MixSettings | None = None,
) -> MixResult:
    """Duck the background under the dub, sum, normalise to target LUFS under the true-peak ceiling.

    Writes a PCM_24 WAV master (background's duration and channel count; a
    mono voice is put in every channel), a web copy (mp3/opus) and the voice
    stem at the master's gain (so stem + ducked background = master). Without
    a background the voice alone is normalised and master == stem. All
    figures in the result are measured on the written files.
    """
    settings = settings or MixSettings()
    sr = settings.sample_rate
    out_dir = os.path.dirname(os.path.abspath(out_master_wav))
    notes: list[str] = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".mix-") as work_dir:
        voice = _resolve(voice_path, sr, work_dir, "voice")
        voice_info = audio_info(voice)
        if background_path is None:
            source, frames, channels = voice, voice_info.frames, voice_info.channels
            measured = measure_loudness(voice)
            voice_peak: float | None = None
        else:
            background = _resolve(background_path, sr, work_dir, "background")
            bg_info = audio_info(background)
            frames, channels = bg_info.frames, bg_info.channels
            if voice_info.frames != frames:
                notes.append(f"voice has {voice_info.frames} frames, background {frames}; voice padded/cut")
            source = os.path.join(work_dir, "premix.wav")
            measured, voice_peak = _premix(voice, background, source, frames, channels, settings)
        gain_db, limited, corrections = _normalise(source, measured, out_master_wav, frames, settings)
        for attempt in range(MAX_CORRECTIONS + 1):
            final, stem = _finish_outputs(
                voice, out_master_wav, out_web, out_stem, frames, gain_db, limited, voice_peak, settings
            )
            peak = final.true_peak_dbtp
            if peak is None or peak <= settings.true_peak_dbtp or attempt == MAX_CORRECTIONS:
                break
            # Rare: resampling after the limiter overshot the ceiling; pull the whole mix down.
            gain_db -= peak - settings.true_peak_dbtp + 0.1
            limited = True
            corrections += 1
            notes.append(f"true peak {peak} dBTP over ceiling; gain reduced")
            _render(source, out_master_wav, gain_db, limited, frames, settings)
    if limited:
        notes.append("true-peak limiter applied")
    return MixResult(
        duration=frames / sr,
        frames=frames,
        sample_rate=sr,
        channels=channels,
        integrated_lufs=final.integrated_lufs,
        true_peak_dbtp=final.true_peak_dbtp,
        lra=final.lra,
        gain_db=gain_db,
        limited=limited,
        premix_integrated_lufs=measured.integrated_lufs,
        stem_integrated_lufs=stem.integrated_lufs,
        stem_true_peak_dbtp=stem.true_peak_dbtp,
        master_path=out_master_wav,
        web_path=out_web,
        stem_path=out_stem,
        corrections=corrections,
        notes=tuple(notes),
    )


def _finish_outputs(
    voice: str,
    master: str,
    web: str,
    stem: str,
    frames: int,
    gain_db: float,
    limited: bool,
    voice_peak: float | None,
    settings: MixSettings,
) -> tuple[Loudness, Loudness]:
    """In parallel: measure the master file, encode the web copy, render + measure the stem.

    ``voice_peak is None`` means there is no background: the stem is the master.
    """
    with ThreadPoolExecutor(max_workers=3) as pool:
        master_job = pool.submit(measure_loudness, master)
        web_job = pool.submit(_encode_web, master, web, settings)
        if voice_peak is None:
            shutil.copyfile(master, stem)
            stem_loudness = master_job.result()
        else:
            stem_limit = limited or _needs_limiter(_db(voice_peak) + 0.5, gain_db, settings)
            _render(voice, stem, gain_db, stem_limit, frames, settings)
            stem_loudness = measure_loudness(stem)
        web_job.result()
        return master_job.result(), stem_loudness
