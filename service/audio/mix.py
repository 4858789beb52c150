"""The final mix: duck the bed under the dub, normalise to the loudness target under the true-peak ceiling,
and write the master, its web copy and the voice stem.

Two passes of one ffmpeg graph over the inputs, nothing in between on disk:

1. measure: the ducked mix (the bed multiplied by the duck curve, plus the voice in every channel) and the
   voice, through `ebur128` (integrated loudness and sample peak);
2. render: the same graph with the gain that reaches the target, a limiter only when the predicted peak
   calls for one, the master (PCM_24) and the stem at the same gain, each measured again (true peak) as it
   is written, and the web copy encoded alongside by a second ffmpeg on the other core.

A miss (the measured true peak over the ceiling, or the loudness off by more than `LOUDNESS_TOLERANCE_LU`)
renders again: with a 4x oversampled limiter, or with a corrected gain. Every figure in the result is
measured on the samples written. Public functions take paths and plain values and return small frozen
dataclasses, so they run in a ``ProcessPoolExecutor`` worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Literal

from service.audio import ffmpeg, wavfiles
from service.audio.decode import DEFAULT_SAMPLE_RATE
from service.audio.ducking import ENVELOPE_RATE, write_envelope
from service.audio.loudness import Loudness, parse_ebur128_summary
from service.settings import Settings
from service.workpool import progress

# The limiter aims this far under the true-peak ceiling: peaks between its samples (and, oversampled, the
# resampling back to the output rate) add a little.
LIMITER_HEADROOM_DB = 0.8
# The limiter first runs at the output rate; only if the measured true peak is still over the ceiling is
# the render repeated with it at 4x.
LIMITER_OVERSAMPLE = 1
FALLBACK_OVERSAMPLE = 4
# The measuring pass reads sample peaks (a true-peak meter would be its slowest part); a sample peak plus
# this margin decides whether the limiter is needed. A miss is caught by the true-peak measurement of the
# written master and repaired by a second render.
INTERSAMPLE_MARGIN_DB = 1.0
# Loudness error we accept before re-rendering with a corrected gain (the test tolerance is 1 LU).
LOUDNESS_TOLERANCE_LU = 0.5
# A re-render keeping its previous gain (`MixSettings.keep_gain_db`) accepts up to the loudness spec's own 1 LU,
# so that what did not change stays sample for sample as before.
KEPT_GAIN_TOLERANCE_LU = 1.0
MAX_CORRECTIONS = 3


@dataclass(frozen=True)
class MixSettings:
    """Knobs of the final mix. Duck depth/times apply to the background under dubbed speech; the depth and the
    loudness targets default to the service's (DUCK_DB, TARGET_LUFS, TRUE_PEAK_DBTP)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    duck_db: float = Settings.duck_db
    attack_ms: float = 80.0
    release_ms: float = 400.0
    hold_ms: float = 200.0
    activity_threshold_dbfs: float = -50.0
    target_lufs: float | None = Settings.target_lufs  # None: keep the premix's own level (media jobs' beds)
    true_peak_dbtp: float = Settings.true_peak_dbtp
    web_format: Literal["mp3", "opus"] = "mp3"
    mp3_bitrate: str = "192k"
    # libmp3lame's -compression_level (LAME -q: 0 best/slowest .. 9 fastest); ffmpeg's default is LAME's 3.
    # The web copy is for listening in the browser (the deliverable is the WAV master); at 192 kbit/s LAME's
    # q7 took 3.2 CPU-s for 10 minutes of stereo against 5.2 s at q5, the largest single cost of a language.
    mp3_compression_level: int = 7
    opus_bitrate: str = "128k"
    block_seconds: float = 1.0
    limiter_attack_ms: float = 5.0
    limiter_release_ms: float = 100.0
    # A re-render's previous gain: kept while it still reaches the target within the tolerance, so what did not
    # change comes out sample for sample as before (None: the gain that reaches the target).
    keep_gain_db: float | None = None
    # With it, the previous render's premix figures (integrated loudness, true peak, the voice's true peak): the
    # measuring pass is skipped (the render pass measures what it writes, and corrects a miss as ever).
    keep_premix: tuple[float | None, float | None, float | None] | None = None
    # And the limiter oversampling it ended with (master, stem): the same limiter, the same samples.
    keep_oversample: tuple[int, int] | None = None


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
    premix_true_peak_dbtp: float | None = None
    voice_true_peak_dbtp: float | None = None
    oversample: int = 0  # the limiter's on the master (0: none), and on the stem
    stem_oversample: int = 0



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



@dataclass(frozen=True)
class _Graph:
    """ffmpeg inputs, and a filter graph over them that ends in `[mix]` (the ducked mix at unity gain, every
    channel of the bed) and `[voice]` (the dubbed voice, mono)."""

    inputs: list[str]
    graph: str
    frames: int
    channels: int
    with_background: bool


def _fan(channels: int) -> str:
    """The mono voice (or curve) copied into every channel."""
    return "pan=mono|c0=c0" if channels == 1 else f"pan={channels}c|" + "|".join(f"c{i}=c0" for i in range(channels))


def _sources(voice: str, background: str | None, envelope: str | None, settings: MixSettings) -> _Graph:
    voice_info = ffmpeg.audio_info(voice)
    if background is None or envelope is None:
        graph = "[0:a]aformat=sample_fmts=flt,pan=mono|c0=c0,asplit=2[mix][voice]"
        return _Graph(["-i", voice], graph, voice_info.frames, 1, False)
    bed = ffmpeg.audio_info(background)
    fan = _fan(bed.channels)
    graph = (
        f"[2:a]aresample={settings.sample_rate},aformat=sample_fmts=flt,{fan}[gain];"
        "[0:a]aformat=sample_fmts=flt[bed];[bed][gain]amultiply[ducked];"
        f"[1:a]aformat=sample_fmts=flt,pan=mono|c0=c0,asplit=2[voice][lead];[lead]{fan}[vox];"
        "[ducked][vox]amix=inputs=2:normalize=0:duration=first[mix]"
    )
    inputs = ["-i", background, "-i", voice,
              "-f", "f32le", "-ar", str(ENVELOPE_RATE), "-ac", "1", "-i", envelope]
    return _Graph(inputs, graph, bed.frames, bed.channels, True)


def _measure(sources: _Graph) -> tuple[Loudness, Loudness]:
    """Pass 1: the mix's and the voice's integrated loudness and sample peaks."""
    graph = (f"{sources.graph};[mix]ebur128@mix=peak=sample:framelog=verbose[m];"
             "[voice]ebur128@voice=peak=sample:framelog=verbose[v]")
    stderr = ffmpeg.run(["-loglevel", "info", *sources.inputs, "-filter_complex", graph,
                         "-map", "[m]", "-f", "null", "-", "-map", "[v]", "-f", "null", "-"])
    return parse_ebur128_summary(stderr, "mix"), parse_ebur128_summary(stderr, "voice")


def _limiter(oversample: int, settings: MixSettings) -> list[str]:
    if not oversample:
        return []
    ceiling = 10.0 ** ((settings.true_peak_dbtp - LIMITER_HEADROOM_DB) / 20.0)
    limiter = (f"alimiter=limit={max(ceiling, 0.0625):.6f}:attack={settings.limiter_attack_ms}"
               f":release={settings.limiter_release_ms}:level=false:latency=true")
    if oversample == 1:
        return [limiter]
    sr = settings.sample_rate
    return [f"aresample={oversample * sr}:resampler=soxr", limiter, f"aresample={sr}:resampler=soxr"]


def _chain(gain_db: float, oversample: int, frames: int, settings: MixSettings) -> str:
    steps = [f"volume={gain_db:.4f}dB:precision=float", *_limiter(oversample, settings),
             f"apad=whole_len={frames}", f"atrim=end_sample={frames}"]
    return ",".join(steps)


def _render(sources: _Graph, gain_db: float, master_os: int, stem_os: int, settings: MixSettings,
            master: str, web: str, stem: str | None) -> tuple[Loudness, Loudness | None]:
    """Pass 2: master, web copy and (with a background) stem at `gain_db`; each written file measured."""
    frames = sources.frames
    graph = (f"{sources.graph};[mix]{_chain(gain_db, master_os, frames, settings)},asplit=3[out][probe][web];"
             "[probe]ebur128@master=peak=true:framelog=verbose[probed]")
    if stem is not None:
        graph += (f";[voice]{_chain(gain_db, stem_os, frames, settings)},asplit=2[stem][stemprobe];"
                  "[stemprobe]ebur128@stem=peak=true:framelog=verbose[stemprobed]")
    else:
        graph += ";[voice]anullsink"
    sr = str(settings.sample_rate)
    with ffmpeg.atomic_output(master) as master_tmp, ffmpeg.atomic_output(web) as web_tmp, \
            ffmpeg.atomic_output(stem or master + ".nostem") as stem_tmp:
        args = ["-loglevel", "info", *sources.inputs, "-filter_complex", graph,
                "-map", "[out]", "-ar", sr, "-c:a", "pcm_s24le", "-rf64", "auto", "-f", "wav", master_tmp,
                "-map", "[probed]", "-f", "null", "-"]
        if stem is not None:
            args += ["-map", "[stem]", "-ar", sr, "-c:a", "pcm_s24le", "-rf64", "auto", "-f", "wav", stem_tmp,
                     "-map", "[stemprobed]", "-f", "null", "-"]
        args += ["-map", "[web]", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
        encoder = ["-loglevel", "error", *ffmpeg.streaming_input(settings.sample_rate, sources.channels),
                   *_web_codec(settings), web_tmp]
        stderr = ffmpeg.run_piped(args, encoder)
        if stem is None:
            open(stem_tmp, "wb").close()  # nothing to keep: removed below, never renamed over anything
    if stem is None:
        os.remove(master + ".nostem")
    return parse_ebur128_summary(stderr, "master"), (parse_ebur128_summary(stderr, "stem") if stem else None)


def _needs_limiter(peak_db: float | None, gain_db: float, settings: MixSettings) -> bool:
    """Predicted (true) peak after gain would come within headroom of the ceiling."""
    if peak_db is None:
        return False
    return peak_db + INTERSAMPLE_MARGIN_DB + gain_db > settings.true_peak_dbtp - LIMITER_HEADROOM_DB


def _over_ceiling(measured: Loudness | None, settings: MixSettings) -> bool:
    peak = measured.true_peak_dbtp if measured is not None else None
    return peak is not None and peak > settings.true_peak_dbtp


def mix(
    voice_path: str,
    background_path: str | None,
    out_master_wav: str,
    out_web: str,
    out_stem: str,
    settings: MixSettings | None = None,
) -> MixResult:
    """Duck the background under the dub, sum, normalise to target LUFS under the true-peak ceiling.

    Writes a PCM_24 WAV master (background's duration and channel count; a mono voice is put in every
    channel), a web copy (mp3/opus) and the voice stem at the master's gain (so stem + ducked background
    = master). Without a background the voice alone is normalised and master == stem.
    """
    settings = settings or MixSettings()
    sr = settings.sample_rate
    out_dir = os.path.dirname(os.path.abspath(out_master_wav))
    notes: list[str] = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".mix-") as work_dir:
        voice = wavfiles.at_rate(voice_path, sr, work_dir, "voice")
        envelope = None
        background = None
        if background_path is not None:
            background = wavfiles.at_rate(background_path, sr, work_dir, "background")
            envelope = os.path.join(work_dir, "duck.f32")
            write_envelope(voice, ffmpeg.audio_info(background).frames, settings, envelope)
            if ffmpeg.audio_info(voice).frames != ffmpeg.audio_info(background).frames:
                notes.append("voice and background differ in length; voice padded/cut to the background")
        sources = _sources(voice, background, envelope, settings)
        progress.report(0.15)  # the work done, by passes over the audio: decoding and ducking, measuring, rendering
        if settings.keep_gain_db is not None and settings.keep_premix is not None:  # a re-render: as before
            lufs, peak, voice_peak = settings.keep_premix
            measured, voice_measured = Loudness(lufs, peak, 0.0), Loudness(None, voice_peak, 0.0)
        else:
            measured, voice_measured = _measure(sources)
        progress.report(0.45)
        result = _normalise(sources, measured, voice_measured, settings, out_master_wav, out_web,
                            out_stem if sources.with_background else None, notes)
    if not sources.with_background:
        shutil.copyfile(out_master_wav, out_stem)
    return result


def _normalise(sources: _Graph, measured: Loudness, voice: Loudness, settings: MixSettings, master: str, web: str,
               stem: str | None, notes: list[str]) -> MixResult:
    """Render at the gain that reaches the target; render again while the measured output misses."""
    target = settings.target_lufs if settings.target_lufs is not None else measured.integrated_lufs
    if measured.integrated_lufs is None or target is None:  # silence: nothing to aim at, copy through
        gain_db, oversample = 0.0, 0
    else:
        gain_db = target - measured.integrated_lufs
        # Kept as it was (the render pass below checks it still reaches the target), unless a measured premix
        # says at once that it cannot.
        if settings.keep_gain_db is not None and (
                settings.keep_premix is not None or abs(settings.keep_gain_db - gain_db) <= KEPT_GAIN_TOLERANCE_LU):
            gain_db = settings.keep_gain_db
        oversample = LIMITER_OVERSAMPLE if _needs_limiter(measured.true_peak_dbtp, gain_db, settings) else 0
    corrections, stem_floor = 0, 0
    if settings.keep_oversample is not None and gain_db == settings.keep_gain_db:
        oversample, stem_floor = settings.keep_oversample
    previous: tuple[float, float] | None = None  # (gain, achieved loudness) of the last loudness miss
    while True:
        stem_os = max(stem_floor, LIMITER_OVERSAMPLE if _needs_limiter(voice.true_peak_dbtp, gain_db, settings)
                      else 0) if stem is not None else 0
        final, stem_figures = _render(sources, gain_db, oversample, stem_os, settings, master, web, stem)
        progress.report(0.9 + 0.1 * (1 - 0.5 ** corrections))  # a correction renders again: less and less left
        master_over, stem_over = _over_ceiling(final, settings), _over_ceiling(stem_figures, settings)
        achieved = final.integrated_lufs
        miss = 0.0 if achieved is None or target is None else target - achieved
        tolerance = KEPT_GAIN_TOLERANCE_LU if gain_db == settings.keep_gain_db else LOUDNESS_TOLERANCE_LU
        if not (master_over or stem_over or abs(miss) > tolerance) or corrections >= MAX_CORRECTIONS:
            break
        corrections += 1
        if master_over or stem_over:
            notes.append(f"true peak over ceiling (master {final.true_peak_dbtp} dBTP at {oversample}x limiting, "
                         f"stem {stem_figures.true_peak_dbtp if stem_figures else None} dBTP at {stem_os}x)")
            exhausted = (master_over and oversample >= FALLBACK_OVERSAMPLE) or (
                stem_over and stem_os >= FALLBACK_OVERSAMPLE)
            if master_over:
                oversample = FALLBACK_OVERSAMPLE
            if stem_over:
                stem_floor = FALLBACK_OVERSAMPLE
            if exhausted:  # even the 4x limiter overshot: pull the whole mix down
                peaks = [p for p in (final.true_peak_dbtp, stem_figures.true_peak_dbtp if stem_figures else None)
                         if p is not None]
                gain_db -= max(peaks) - settings.true_peak_dbtp + 0.1
                notes.append("gain reduced")
        else:
            assert achieved is not None
            # Under a limiter 1 dB of gain buys less than 1 LU: follow the measured slope (secant step).
            slope = 1.0
            if previous is not None and abs(gain_db - previous[0]) > 1e-3:
                slope = min(1.0, max(0.25, (achieved - previous[1]) / (gain_db - previous[0])))
            previous = (gain_db, achieved)
            gain_db += miss / slope
            if not oversample and _needs_limiter(measured.true_peak_dbtp, gain_db, settings):
                oversample = LIMITER_OVERSAMPLE
    if oversample:
        notes.append("true-peak limiter applied")
    stem_figures = stem_figures if stem is not None else final
    return MixResult(
        duration=sources.frames / settings.sample_rate, frames=sources.frames, sample_rate=settings.sample_rate,
        channels=sources.channels, integrated_lufs=final.integrated_lufs, true_peak_dbtp=final.true_peak_dbtp,
        lra=final.lra, gain_db=gain_db, limited=oversample > 0, premix_integrated_lufs=measured.integrated_lufs,
        stem_integrated_lufs=stem_figures.integrated_lufs if stem_figures else None,
        stem_true_peak_dbtp=stem_figures.true_peak_dbtp if stem_figures else None,
        master_path=master, web_path=web, stem_path=stem or master, corrections=corrections, notes=tuple(notes),
        premix_true_peak_dbtp=measured.true_peak_dbtp, voice_true_peak_dbtp=voice.true_peak_dbtp,
        oversample=oversample, stem_oversample=stem_os,
    )
