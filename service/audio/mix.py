"""The final mix: normalise to the loudness target under the true-peak ceiling, master, web copy and stem.

Public functions take paths and plain values and return small frozen dataclasses, so they can run in a
``ProcessPoolExecutor`` worker. Every figure in the result is measured on the samples written.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from service.audio import ffmpeg, wavfiles
from service.audio.decode import DEFAULT_SAMPLE_RATE
from service.audio.ducking import premix
from service.audio.loudness import Loudness, measure_loudness, parse_ebur128_summary

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
    with ffmpeg.atomic_output(dst) as tmp:
        args = ["-loglevel", "info", "-i", src, "-filter_complex", graph]
        args += ["-map", "[out]", "-ar", str(sr), "-c:a", "pcm_s24le", "-rf64", "auto", "-f", "wav", tmp]
        args += ["-map", "[probed]", "-f", "null", "-"]
        if web is None:
            return parse_ebur128_summary(ffmpeg.run(args))
        args += ["-map", "[web]", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
        with ffmpeg.atomic_output(web) as web_tmp:
            encoder = ["-loglevel", "error", *ffmpeg.streaming_input(sr, ffmpeg.audio_info(src).channels),
                       *_web_codec(settings), web_tmp]
            stderr = ffmpeg.run_piped(args, encoder)
    return parse_ebur128_summary(stderr)


def _needs_limiter(peak_db: float | None, gain_db: float, settings: MixSettings) -> bool:
    """Predicted (true) peak after gain would come within headroom of the ceiling."""
    if peak_db is None:
        return False
    return peak_db + gain_db > settings.true_peak_dbtp - LIMITER_HEADROOM_DB



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
        voice = wavfiles.at_rate(voice_path, sr, work_dir, "voice")
        voice_info = ffmpeg.audio_info(voice)
        voice_peak: float | None = None
        if background_path is None:
            source, frames, channels = voice, voice_info.frames, voice_info.channels
            measured = measure_loudness(voice)
            peak_estimate = measured.true_peak_dbtp
        else:
            background = wavfiles.at_rate(background_path, sr, work_dir, "background")
            bg_info = ffmpeg.audio_info(background)
            frames, channels = bg_info.frames, bg_info.channels
            if voice_info.frames != frames:
                notes.append(f"voice has {voice_info.frames} frames, background {frames}; voice padded/cut")
            source = os.path.join(work_dir, "premix.wav")
            measured, voice_peak, mix_peak = premix(voice, background, source, frames, channels, settings)
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
                    stem_job = pool.submit(_render, voice, out_stem, gain_db, stem_os, frames, settings)
                if master_key != (gain_db, oversample):
                    final = _render(source, out_master_wav, gain_db, oversample, frames, settings, web=out_web)
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
