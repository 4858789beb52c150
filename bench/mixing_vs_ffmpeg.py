"""The mixing stage's audio work against one hand-written ffmpeg command, on the same inputs, same run.

Inputs (see `_lib/inputs.py`): an N-minute English voice timeline whose sentences were translated to
Spanish and spoken by the service's espeak-ng engine (the clips the dubbing stage hands to mixing, placed
at their source lines and cut at the next line as the mixing stage does), and an N-minute stereo 48 kHz
background.

* ours   = `service.audio.voice_track.build_voice_track(clips)` + `mix(voice_track, background)`: streamed
           numpy premix with ducking, EBU R128 normalisation to -16 LUFS under a -1 dBTP ceiling (limiter
           when needed), PCM_24 master + 192k mp3 + voice stem, every output measured.
* ffmpeg = the anchor: one command on the voice track (built once beforehand by `build_voice_track`) and the
           same background: decode, ducking (`sidechaincompress` keyed by the voice), `amix`, `alimiter`,
           PCM_16 master. It does not normalise loudness, measure anything or encode a web copy: a mix
           that must hit a loudness target needs a measurement and a render, so about 2x is the floor.

Each is run `--rounds` times (default 3), alternating, and the medians compared: ratio = ours / ffmpeg wall
time (target <= 2.0). Both masters are measured with ffmpeg's ebur128. Also timed, outside the ratio: the
internal phases of `mix`, and the per-clip time-stretch loop the mixing stage runs before mixing
(sequential, as `service/stages/mixing.py` does it, vs. spread over 2 processes).

    .venv/bin/python bench/mixing_vs_ffmpeg.py           # 10-minute inputs
    .venv/bin/python bench/mixing_vs_ffmpeg.py --quick   # 1-minute inputs
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _lib import inputs, machine
from _lib.results import median, write_results

RATIO_TARGET = 2.0
PHASES = ("write_envelope", "_measure", "_render")  # names in service.audio.mix


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (the ffmpeg processes) so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class PhaseTimer:
    """Wraps module-level functions of `service.audio.mix` to time each call (no behaviour change)."""

    def __init__(self) -> None:
        from service.audio import mix as mixing

        self.module = mixing
        self.calls: dict[str, list[float]] = {}
        self._originals: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> PhaseTimer:
        for name in PHASES:
            original = getattr(self.module, name)
            self._originals[name] = original

            def timed(*args: Any, _name: str = name, _f: Callable[..., Any] = original, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    self.calls.setdefault(_name, []).append(round(time.perf_counter() - started, 3))

            setattr(self.module, name, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._originals.items():
            setattr(self.module, name, original)


def run_ours(placed: list[Any], seconds: float, background: Path, out: Path) -> dict[str, Any]:
    from service.audio.mix import MixSettings, mix
    from service.audio.voice_track import build_voice_track

    out.mkdir(parents=True, exist_ok=True)
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    with PhaseTimer() as phases:
        build_voice_track(placed, seconds, str(out / "voice_track.wav"), 48000)
        t_built = time.perf_counter()
        result = mix(str(out / "voice_track.wav"), str(background), str(out / "master.wav"), str(out / "master.mp3"),
                     str(out / "voice_stem.wav"), MixSettings())
    wall = time.perf_counter() - t0
    return {"wall_seconds": round(wall, 3), "build_voice_track_seconds": round(t_built - t0, 3),
            "mix_seconds": round(time.perf_counter() - t_built, 3), "cpu_seconds": round(_cpu_seconds() - cpu0, 2),
            "phases": phases.calls, "service_reported": {"integrated_lufs": result.integrated_lufs,
                                                         "true_peak_dbtp": result.true_peak_dbtp,
                                                         "limited": result.limited,
                                                         "corrections": result.corrections},
            "master": str(out / "master.wav")}


def ffmpeg_command(voice_track: Path, background: Path, master: Path) -> list[str]:
    """The anchor (issue 13): decode, duck the bed under the voice, mix, limit; one pass, no loudness target."""
    graph = (
        "[0:a]aresample=48000,aformat=channel_layouts=stereo[bg];"
        "[1:a]aresample=48000,aformat=channel_layouts=stereo,asplit=2[sc][vox];"
        "[bg][sc]sidechaincompress=threshold=0.02:ratio=8:attack=20:release=400[duck];"
        "[duck][vox]amix=inputs=2:normalize=0:duration=first,alimiter=limit=0.891:level=false"
    )
    return ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
            "-i", str(background), "-i", str(voice_track), "-filter_complex", graph,
            "-ar", "48000", "-c:a", "pcm_s16le", str(master)]


def run_ffmpeg(voice_track: Path, background: Path, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    master = out / "master.wav"
    cmd = ffmpeg_command(voice_track, background, master)
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return {"wall_seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(_cpu_seconds() - cpu0, 2),
            "master": str(master)}


def stretch_plan(voice: inputs.VoiceInput, target: inputs.TargetClips, seconds: float) -> list[tuple[str, float]]:
    """The clips the mixing stage would time-stretch (still too long after the engine-rate step), with factors."""
    from service.audio import fitting

    plan = []
    for timing, (path, duration, _) in zip(
            fitting.slots_from_segments([(s, e) for s, e, _ in voice.lines], seconds), target.clips, strict=True):
        stretch = fitting.choose_stretch(duration, timing.source_end - timing.source_start)
        if stretch > 1.0:
            plan.append((path, stretch))
    return plan


def time_stretch_loop(plan: list[tuple[str, float]], out: Path) -> dict[str, Any]:
    from service.audio.stretch import time_stretch

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(path, str(out / f"{i:05d}.fit.wav"), factor) for i, (path, factor) in enumerate(plan)]
    started = time.perf_counter()
    for path, dst, factor in jobs:  # one at a time, as service/stages/mixing.py awaits them
        time_stretch(path, dst, factor)
    sequential = time.perf_counter() - started
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(int, [0, 0]))  # start both workers before timing
        started = time.perf_counter()
        list(pool.map(time_stretch, *zip(*jobs, strict=True))) if jobs else None
        parallel = time.perf_counter() - started
    return {"clips": len(jobs), "sequential_seconds": round(sequential, 2),
            "per_clip_ms": round(1000 * sequential / max(len(jobs), 1), 1),
            "two_processes_seconds": round(parallel, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1-minute inputs instead of 10 minutes")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="wait up to this many seconds for other processes to leave the CPUs idle")
    args = parser.parse_args()
    if args.quiet_wait is None:  # the machine is shared: wait a while for it before a full run
        args.quiet_wait = 0.0 if args.quick else 120.0
    minutes = args.minutes or (1.0 if args.quick else 10.0)
    seconds = minutes * 60.0
    bench_started = time.perf_counter()

    from service.audio.voice_track import build_voice_track

    voice = inputs.make_voice(seconds)
    background = inputs.make_background(seconds)
    target = inputs.make_target_clips(voice, "es")
    placed = inputs.placed_clips(voice, target, seconds)
    print(f"inputs: {seconds:.0f} s, {len(placed)} Spanish clips placed on the voice timeline, stereo 48 kHz "
          f"background ({background.stat().st_size / 2**20:.0f} MiB)")

    results: dict[str, Any] = {"benchmark": "mixing_vs_ffmpeg", "quick": args.quick,
                               "environment": machine.environment(),
                               "input": {"seconds": seconds, "clips": len(placed),
                                         "background": "stereo 48 kHz PCM_16 WAV",
                                         "voice_track": "mono 48 kHz float WAV from build_voice_track"},
                               "ffmpeg_command": None, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="bench-mix-") as tmp:
        work = Path(tmp)
        voice_track = work / "input_voice_track.wav"
        build_voice_track(placed, seconds, str(voice_track), 48000)
        results["ffmpeg_command"] = " ".join(
            f"'{a}'" if any(c in a for c in "[]|;,=") else a
            for a in ffmpeg_command(Path("voice_track.wav"), Path("background.wav"), Path("master.wav")))
        results["machine_busy_before"] = asyncio.run(machine.wait_for_quiet(args.quiet_wait, threshold=0.15))
        with machine.CpuSampler() as cpu:
            for n in range(args.rounds):
                round_dir = work / f"round{n}"
                t_ours = time.time()
                ours = run_ours(placed, seconds, background, round_dir / "ours")
                ours["foreign_busy_cores"] = cpu.foreign_cores(t_ours, time.time())
                t_ff = time.time()
                ff = run_ffmpeg(voice_track, background, round_dir / "ffmpeg")
                ff["foreign_busy_cores"] = cpu.foreign_cores(t_ff, time.time())
                print(f"round {n + 1}: ours {ours['wall_seconds']:.2f} s (build {ours['build_voice_track_seconds']:.2f}"
                      f" + mix {ours['mix_seconds']:.2f}; {ours['cpu_seconds']:.1f} CPU-s; other processes "
                      f"{ours['foreign_busy_cores']} cores), ffmpeg {ff['wall_seconds']:.2f} s "
                      f"({ff['cpu_seconds']:.1f} CPU-s; other processes {ff['foreign_busy_cores']} cores)")
                if n == args.rounds - 1:
                    ours["loudness_measured"] = inputs.ebur128(ours["master"])
                    ff["loudness_measured"] = inputs.ebur128(ff["master"])
                    ours["frames"] = _frames(ours["master"])
                    ff["frames"] = _frames(ff["master"])
                results["rounds"].append({"ours": ours, "ffmpeg": ff})
                if n < args.rounds - 1:
                    shutil.rmtree(round_dir)
        plan = stretch_plan(voice, target, seconds)
        results["stretch_loop"] = time_stretch_loop(plan, work / "stretch")

    ours_med = median([r["ours"]["wall_seconds"] for r in results["rounds"]])
    mix_med = median([r["ours"]["mix_seconds"] for r in results["rounds"]])
    ff_med = median([r["ffmpeg"]["wall_seconds"] for r in results["rounds"]])
    last = results["rounds"][-1]
    ratio = ours_med / ff_med
    results["summary"] = {
        "ours_median_seconds": round(ours_med, 3),
        "ours_mix_only_median_seconds": round(mix_med, 3),
        "ffmpeg_median_seconds": round(ff_med, 3),
        "ratio_ours_over_ffmpeg": round(ratio, 3),
        "ratio_mix_only_over_ffmpeg": round(mix_med / ff_med, 3),
        "ratio_target": RATIO_TARGET,
        "meets_target": ratio <= RATIO_TARGET,
        "ours_best_seconds": min(r["ours"]["wall_seconds"] for r in results["rounds"]),
        "ffmpeg_best_seconds": min(r["ffmpeg"]["wall_seconds"] for r in results["rounds"]),
        "ratio_best_over_best": round(min(r["ours"]["wall_seconds"] for r in results["rounds"])
                                      / min(r["ffmpeg"]["wall_seconds"] for r in results["rounds"]), 3),
        "other_processes_busy_cores": [(r["ours"]["foreign_busy_cores"], r["ffmpeg"]["foreign_busy_cores"])
                                       for r in results["rounds"]],
        "ours_cpu_seconds_median": median([r["ours"]["cpu_seconds"] for r in results["rounds"]]),
        "ffmpeg_cpu_seconds_median": median([r["ffmpeg"]["cpu_seconds"] for r in results["rounds"]]),
        "ours_loudness": last["ours"]["loudness_measured"],
        "ffmpeg_loudness": last["ffmpeg"]["loudness_measured"],
    }
    s = results["summary"]
    print("\n=== summary")
    print(f"ours (build_voice_track + mix): median {ours_med:.2f} s; mix alone {mix_med:.2f} s; "
          f"ffmpeg one command: median {ff_med:.2f} s")
    print(f"ratio ours / ffmpeg = {ratio:.2f} (target <= {RATIO_TARGET:g}): {'MET' if s['meets_target'] else 'NOT MET'}"
          f"; mix alone / ffmpeg = {s['ratio_mix_only_over_ffmpeg']:.2f}")
    print(f"best of {args.rounds}: ours {s['ours_best_seconds']:.2f} s, ffmpeg {s['ffmpeg_best_seconds']:.2f} s, ratio "
          f"{s['ratio_best_over_best']:.2f} (less sensitive to other processes, which used "
          f"{s['other_processes_busy_cores']} cores during (ours, ffmpeg) of each round)")
    print(f"CPU seconds: ours {s['ours_cpu_seconds_median']:.1f}, ffmpeg {s['ffmpeg_cpu_seconds_median']:.1f} "
          f"(ratio {s['ours_cpu_seconds_median'] / s['ffmpeg_cpu_seconds_median']:.2f})")
    print("phases of mix (last round, seconds): " + ", ".join(
        f"{k} {v}" for k, v in last["ours"]["phases"].items()))
    for name in ("ours", "ffmpeg"):
        lo = s[f"{name}_loudness"]
        print(f"{name:6} master: {lo['integrated_lufs']} LUFS integrated, {lo['true_peak_dbtp']} dBTP true peak, "
              f"LRA {lo['lra_lu']} LU, {last[name]['frames']} frames")
    st = results["stretch_loop"]
    print(f"time-stretch loop of the mixing stage (not in the ratio): {st['clips']} clips, "
          f"{st['sequential_seconds']} s "
          f"one at a time ({st['per_clip_ms']} ms each), {st['two_processes_seconds']} s over 2 processes")
    results["bench_seconds"] = round(time.perf_counter() - bench_started, 1)
    write_results("mixing_vs_ffmpeg", results, quick=args.quick)


def _frames(path: str) -> int:
    import soundfile as sf

    return int(sf.info(path).frames)


if __name__ == "__main__":
    main()
