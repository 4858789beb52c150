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
import subprocess
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
    FFMPEG,
    FfmpegError,
    audio_info,
    decode_to_wav,
    partial_path,
    run_ffmpeg,
)
from service.audio.fitting import FADE_OUT_S
from service.audio.loudness import Loudness, StreamingLoudness, measure_loudness, parse_ebur128_summary

Float32Array = npt.NDArray[np.float32]

HOP_SECONDS = 0.010
# Render the limiter this far under the ceiling: peaks between the oversampled limiter's samples and
# the resampling back to the output rate can add a little overshoot.
LIMITER_HEADROOM_DB = 0.5
# The limiter first runs at 2x the output rate (about half the cost of 4x; enough for program material);
# only if the measured true peak is still over the ceiling is the pass repeated at 4x.
LIMITER_OVERSAMPLE = 2
FALLBACK_OVERSAMPLE = 4
# The premix is measured without true peak (ebur128's 4x true-peak meter would be the slowest part of
# the premix pass); its sample peak plus this margin decides whether the limiter is needed. A miss is
# caught by the true-peak measurement of the written master and repaired by a second pass.
INTERSAMPLE_MARGIN_DB = 1.0
# Loudness error we accept before re-rendering with a corrected gain (the test tolerance is 1 LU).
LOUDNESS_TOLERANCE_LU = 0.5
MAX_CORRECTIONS = 3
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
    # libmp3lame's -compression_level (LAME -q: 0 best/slowest .. 9 fastest); ffmpeg's default is LAME's 3.
    mp3_compression_level: int = 5
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
    active = _voice_activity(voice_path, total, hop, settings.activity_threshold_dbfs, block)
    gains_lin = 10.0 ** (duck_envelope(active, settings) / 20.0)
    centres = np.arange(gains_lin.shape[0], dtype=np.float64) * hop + hop / 2.0
    voice_peak = mix_peak = 0.0
    with (
        sf.SoundFile(background_path) as bg,
        sf.SoundFile(voice_path) as voice,
        _open_wav_for_write(out_path, sr, channels, total) as out,
        StreamingLoudness(sr, channels, true_peak=False) as meter,
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
            if n:
                mix_peak = max(mix_peak, float(np.max(np.abs(mixed))))
            out.write(mixed)
            meter.feed(mixed)
            position += n
        loudness = meter.finish()
    return loudness, voice_peak, mix_peak


# --------------------------------------------------------------------------- rendering


def _db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def _web_codec(settings: MixSettings) -> list[str]:
    """ffmpeg output options of the web copy (mp3 via libmp3lame, or Ogg Opus)."""
    if settings.web_format == "mp3":
        return [
            "-c:a", "libmp3lame", "-b:a", settings.mp3_bitrate,
            "-compression_level", str(settings.mp3_compression_level), "-f", "mp3",
        ]  # fmt: skip
    if settings.web_format == "opus":
        return ["-c:a", "libopus", "-b:a", settings.opus_bitrate, "-f", "opus"]
    raise ValueError(f"unknown web format {settings.web_format!r}")


def _encode_web(master: str, dst: str, settings: MixSettings) -> None:
    """Compressed web copy of a finished master file (standalone; `_render` normally encodes it on the fly)."""
    tmp = partial_path(dst)
    _run_to(tmp, dst, ["-i", master, "-map", "0:a:0", *_web_codec(settings), tmp])


def _run_to(tmp: str, dst: str, args: list[str]) -> str:
    """Run ffmpeg writing ``tmp``; move it to ``dst`` on success, remove it on failure."""
    try:
        stderr = run_ffmpeg(args)
    except BaseException:
        _remove_quietly(tmp)
        raise
    os.replace(tmp, dst)
    return stderr


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _render(
    src: str,
    dst: str,
    gain_db: float,
    oversample: int,
    frames: int,
    settings: MixSettings,
    web: str | None = None,
) -> Loudness:
    """One streamed pass: gain (and, if ``oversample``, a limiter), PCM_24 ``dst`` of exactly ``frames``.

    ``oversample`` 0 means no limiter; otherwise the limiter runs at that
    multiple of the sample rate with its ceiling `LIMITER_HEADROOM_DB` under
    the true-peak ceiling. The same graph feeds an ``ebur128`` (true peak)
    branch, so the returned figures are those of exactly the samples written
    (before 24-bit quantisation, which moves them by < 1e-6 dB). With ``web``
    the same samples are also piped to a second ffmpeg process that encodes
    the web copy on the other core.
    """
    sr = settings.sample_rate
    chain = [f"volume={gain_db:.4f}dB:precision=float"]
    if oversample:
        ceiling = 10.0 ** ((settings.true_peak_dbtp - LIMITER_HEADROOM_DB) / 20.0)
        limiter = (
            f"alimiter=limit={max(ceiling, 0.0625):.6f}:attack={settings.limiter_attack_ms}"
            f":release={settings.limiter_release_ms}:level=false:latency=true"
        )
        if oversample > 1:
            chain += [f"aresample={oversample * sr}:resampler=soxr", limiter, f"aresample={sr}:resampler=soxr"]
        else:
            chain.append(limiter)
    chain += [f"apad=whole_len={frames}", f"atrim=end_sample={frames}"]
    branches = 3 if web is not None else 2
    labels = "[out][probe][web]" if web is not None else "[out][probe]"
    graph = f"[0:a:0]{','.join(chain)},asplit={branches}{labels};[probe]ebur128=peak=true:framelog=verbose[probed]"
    tmp = partial_path(dst)
    args = ["-loglevel", "info", "-i", src, "-filter_complex", graph]
    args += ["-map", "[out]", "-ar", str(sr), "-c:a", "pcm_s24le", "-rf64", "auto", "-f", "wav", tmp]
    args += ["-map", "[probed]", "-f", "null", "-"]
    if web is None:
        return parse_ebur128_summary(_run_to(tmp, dst, args))
    args += ["-map", "[web]", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    web_tmp = partial_path(web)
    try:
        stderr = _run_piped(args, _web_encoder_args(src, web_tmp, sr, settings))
    except BaseException:
        _remove_quietly(tmp)
        _remove_quietly(web_tmp)
        raise
    os.replace(tmp, dst)
    os.replace(web_tmp, web)
    return parse_ebur128_summary(stderr)


def _web_encoder_args(src: str, dst: str, sample_rate: int, settings: MixSettings) -> list[str]:
    channels = audio_info(src).channels
    return [
        "-loglevel", "error", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0",
        *_web_codec(settings), dst,
    ]  # fmt: skip


def _run_piped(producer: list[str], consumer: list[str]) -> str:
    """Run ffmpeg ``producer`` with its stdout piped into ffmpeg ``consumer``; return the producer's stderr."""
    common = [FFMPEG, "-nostdin", "-hide_banner", "-nostats", "-y"]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryFile() as consumer_err:
        try:
            sink = subprocess.Popen(
                [*common, *consumer], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=consumer_err
            )
            procs.append(sink)
            assert sink.stdin is not None
            source = subprocess.Popen(
                [*common, *producer], stdin=subprocess.DEVNULL, stdout=sink.stdin, stderr=subprocess.PIPE
            )
            procs.append(source)
            sink.stdin.close()  # the producer holds the only write end now: the encoder sees EOF when it exits
            _, err = source.communicate()
            sink.wait()
        except BaseException:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            raise
        stderr = err.decode("utf-8", "replace")
        consumer_err.seek(0)
        encoder_tail = consumer_err.read().decode("utf-8", "replace")[-1000:].strip()
        if source.returncode != 0:
            raise FfmpegError(
                f"ffmpeg exited with {source.returncode}: {stderr[-2000:].strip()}"
                + (f"; web encoder: {encoder_tail}" if encoder_tail else "")
            )
        if sink.returncode != 0:
            raise FfmpegError(f"web encoder exited with {sink.returncode}: {encoder_tail}")
    return stderr


def _needs_limiter(peak_db: float | None, gain_db: float, settings: MixSettings) -> bool:
    """Predicted (true) peak after gain would come within headroom of the ceiling."""
    if peak_db is None:
        return False
    return peak_db + gain_db > settings.true_peak_dbtp - LIMITER_HEADROOM_DB


def _normalise(
    src: str,
    web: str,
    dst: str,
    frames: int,
    gain_db: float,
    oversample: int,
    settings: MixSettings,
) -> Loudness:
    """Render the master (``dst``) and its web copy at ``gain_db``; return the master's measured figures."""
    return _render(src, dst, gain_db, oversample, frames, settings, web=web)


def _finish_outputs(
    voice: str, stem: str, frames: int, gain_db: float, oversample: int, settings: MixSettings
) -> Loudness:
    """Render the voice stem at the master's gain; return its measured figures."""
    return _render(voice, stem, gain_db, oversample, frames, settings)


def _over_ceiling(measured: Loudness, settings: MixSettings) -> bool:
    return measured.true_peak_dbtp is not None and measured.true_peak_dbtp > settings.true_peak_dbtp


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
    figures in the result are measured on the samples written to the files.

    The master, the web copy and the master's measurement come from one
    streamed pass (the stem's pass runs alongside it). The limiter first runs
    at `LIMITER_OVERSAMPLE`x; only if the measured true peak is still over the
    ceiling, or the loudness misses the target by more than
    `LOUDNESS_TOLERANCE_LU`, is the pass repeated (4x limiter, corrected gain).
    """
    settings = settings or MixSettings()
    sr = settings.sample_rate
    out_dir = os.path.dirname(os.path.abspath(out_master_wav))
    notes: list[str] = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".mix-") as work_dir:
        voice = _resolve(voice_path, sr, work_dir, "voice")
        voice_info = audio_info(voice)
        voice_peak: float | None = None
        if background_path is None:
            source, frames, channels = voice, voice_info.frames, voice_info.channels
            measured = measure_loudness(voice)
            peak_estimate = measured.true_peak_dbtp
        else:
            background = _resolve(background_path, sr, work_dir, "background")
            bg_info = audio_info(background)
            frames, channels = bg_info.frames, bg_info.channels
            if voice_info.frames != frames:
                notes.append(f"voice has {voice_info.frames} frames, background {frames}; voice padded/cut")
            source = os.path.join(work_dir, "premix.wav")
            measured, voice_peak, mix_peak = _premix(voice, background, source, frames, channels, settings)
            # Only the sample peak is known here; true peaks can sit a little above it.
            peak_estimate = _db(mix_peak) + INTERSAMPLE_MARGIN_DB if mix_peak > 0 else None

        if measured.integrated_lufs is None:  # silence: nothing to aim at, copy through
            gain_db, oversample = 0.0, 0
        else:
            gain_db = settings.target_lufs - measured.integrated_lufs
            oversample = LIMITER_OVERSAMPLE if _needs_limiter(peak_estimate, gain_db, settings) else 0
        corrections, stem_floor = 0, 0
        previous: tuple[float, float] | None = None  # (gain, achieved loudness) of the last loudness miss
        master_key: tuple[float, int] | None = None
        stem_key: tuple[float, int] | None = None
        final = stem = Loudness(None, None, 0.0)
        while True:
            stem_os = 0
            if voice_peak is not None:
                voice_hot = _needs_limiter(_db(voice_peak) + INTERSAMPLE_MARGIN_DB, gain_db, settings)
                stem_os = max(stem_floor, LIMITER_OVERSAMPLE if oversample or voice_hot else 0)
            with ThreadPoolExecutor(max_workers=1) as pool:
                stem_job = None
                if voice_peak is not None and stem_key != (gain_db, stem_os):
                    stem_job = pool.submit(_finish_outputs, voice, out_stem, frames, gain_db, stem_os, settings)
                if master_key != (gain_db, oversample):
                    final = _normalise(source, out_web, out_master_wav, frames, gain_db, oversample, settings)
                    master_key = (gain_db, oversample)
                if stem_job is not None:
                    stem, stem_key = stem_job.result(), (gain_db, stem_os)
            master_over = _over_ceiling(final, settings)
            stem_over = voice_peak is not None and _over_ceiling(stem, settings)
            achieved = final.integrated_lufs
            miss = 0.0 if achieved is None or measured.integrated_lufs is None else settings.target_lufs - achieved
            if not (master_over or stem_over or abs(miss) > LOUDNESS_TOLERANCE_LU) or corrections >= MAX_CORRECTIONS:
                break
            corrections += 1
            if master_over or stem_over:
                notes.append(
                    f"true peak over ceiling (master {final.true_peak_dbtp} dBTP at {oversample}x limiting, "
                    f"stem {stem.true_peak_dbtp} dBTP at {stem_os}x)"
                )
                exhausted = (master_over and oversample >= FALLBACK_OVERSAMPLE) or (
                    stem_over and stem_os >= FALLBACK_OVERSAMPLE
                )
                if master_over:
                    oversample = FALLBACK_OVERSAMPLE
                if stem_over:
                    stem_floor = FALLBACK_OVERSAMPLE
                if exhausted:  # even the 4x limiter overshot: pull the whole mix down
                    worst = max(p for p in (final.true_peak_dbtp, stem.true_peak_dbtp) if p is not None)
                    gain_db -= worst - settings.true_peak_dbtp + 0.1
                    notes.append("gain reduced")
            else:
                assert achieved is not None
                # Under a limiter 1 dB of gain buys less than 1 LU: follow the measured slope (secant step).
                slope = 1.0
                if previous is not None and abs(gain_db - previous[0]) > 1e-3:
                    slope = min(1.0, max(0.25, (achieved - previous[1]) / (gain_db - previous[0])))
                previous = (gain_db, achieved)
                gain_db += miss / slope
                if not oversample and _needs_limiter(peak_estimate, gain_db, settings):
                    oversample = LIMITER_OVERSAMPLE
        if voice_peak is None:
            shutil.copyfile(out_master_wav, out_stem)
            stem = final
    limited = oversample > 0
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
