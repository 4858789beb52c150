"""Peak memory of the process tree for a short and a long stereo 48 kHz job (voice + background).

Each measured in a process tree of its own, sampled every 50 ms from /proc (VmRSS summed over the root and
all its descendants; PSS too, which counts shared pages once):

1. pipeline - the whole pipeline through the API, 5 and 60 minutes (target es): `dubbing serve` in its own
              process (`_lib.servers.serving`, CPU_WORKERS=2, MAX_UPLOAD_BYTES raised to 2 GiB for the
              60-minute WAV bed); the tree is the service process, the forkserver, its 2 pool workers (each
              holding the Whisper model) and every ffmpeg / espeak-ng / apertium child. Sampled from job
              creation to the `done` event.
2. mixing   - the mixing stage's `build_voice_track` + `mix` (with the stereo background), the per-language
              work whose data is proportional to the length, run in a worker of the service's own process pool
              (`service.workpool.cpu_pool.create(2)`), for 5 and 60 minutes. Clips are Spanish espeak-ng clips
              (the dubbing stage's output) laid along the timeline with natural pauses.
3. stt      - the stt stage's engine call, `service.engines.offline.whisper.transcribe_file` (what a pool worker
              runs), for 5 and 60 minutes, each in a fresh process.

Targets: 60-minute peak <= 1.5 x the 5-minute peak, and < 1 GiB.

    .venv/bin/python bench/memory_peak.py           # pipeline, mixing and stt at 5 and 60 min (~20 min)
    .venv/bin/python bench/memory_peak.py --quick   # pipeline 1 min; 0.5 vs 3 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _lib import ADMIN_URL, inputs, machine, servers, stages
from _lib.results import write_results

from tests.support import scratch_database

GROWTH_TARGET = 1.5
ABSOLUTE_TARGET_MIB = 1024.0
SAMPLE_INTERVAL = 0.05


# ----------------------------------------------------------------------------------- child modes
def _child_mixing(minutes: float, clip_source_seconds: float, out_json: str) -> None:
    """Host process for (2): create the service's pool, run the mixing path in one worker, report."""
    from service.workpool import cpu_pool

    seconds = minutes * 60.0
    source = inputs.make_voice(clip_source_seconds)
    clips = inputs.make_target_clips(source, "es")
    placed = inputs.cycled_placement(clips, seconds)
    background = inputs.make_background(seconds)
    with tempfile.TemporaryDirectory(prefix="bench-mem-mix-") as tmp:
        pool = cpu_pool.create(2, str(Path(tempfile.gettempdir()) / "dubbing-numba-cache"))
        try:
            asyncio.run(cpu_pool.warm(pool, 2, []))
            print("READY", flush=True)
            sys.stdin.readline()  # the parent starts sampling, then says go
            started = time.perf_counter()
            figures = pool.submit(stages.mixing_path, placed, seconds, str(background), tmp).result()
            figures["wall_seconds"] = round(time.perf_counter() - started, 2)
            figures["clips"] = len(placed)
        finally:
            pool.shutdown()
    Path(out_json).write_text(json.dumps(figures))


def _child_stt(path: str, out_json: str) -> None:
    Path(out_json).write_text(json.dumps(stages.stt_front_end(path)))


def _child_whisper(path: str, out_json: str) -> None:
    Path(out_json).write_text(json.dumps(stages.whisper_transcribe(path)))


# ----------------------------------------------------------------------------------- measurements
def measure_mixing(minutes: float, clip_source_seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--child-mixing", str(minutes), str(clip_source_seconds),
                                 out.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != "READY":
            pass
        idle = machine.TreeMemorySampler(proc.pid, SAMPLE_INTERVAL)
        idle.sample()
        with machine.TreeMemorySampler(proc.pid, SAMPLE_INTERVAL) as sampler:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"mixing child failed with {proc.returncode}")
        figures = json.loads(Path(out.name).read_text())
    return {"minutes": minutes, "tree_idle_rss_mib": round(idle.peak_rss_kib / 1024, 1), **sampler.figures(),
            "worker": figures}


def measure_stt_front_end(minutes: float, mode: str = "--child-stt") -> dict[str, Any]:
    voice = inputs.make_voice(minutes * 60.0)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.Popen([sys.executable, __file__, mode, str(voice.path), out.name])
        with machine.TreeMemorySampler(proc.pid, SAMPLE_INTERVAL) as sampler:
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"stt child failed with {proc.returncode}")
        figures = json.loads(Path(out.name).read_text())
    return {"minutes": minutes, **sampler.figures(), "steps": figures,
            "timeline_rss_mib": [(t, round(k / 1024)) for t, k in sampler.timeline[::10]]}


async def measure_pipeline(minutes: float) -> dict[str, Any]:
    seconds = minutes * 60.0
    voice = inputs.make_voice(seconds)
    background = inputs.make_background(seconds)
    async with scratch_database(ADMIN_URL, "bench_mem") as url:
        with tempfile.TemporaryDirectory(prefix="bench-mem-pipe-") as tmp:
            async with servers.serving("dubbing", url, Path(tmp), CPU_WORKERS="2",
                                       MAX_UPLOAD_BYTES=str(2 << 30)) as server, \
                    httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                headers = servers.auth("bench")
                objects = await inputs.upload_files(client, headers, {"voice": voice.path, "background": background})
                await asyncio.sleep(5)  # start-up loads Whisper into both workers in the background
                idle = machine.TreeMemorySampler(server.pid, SAMPLE_INTERVAL)
                idle.sample()
                with machine.TreeMemorySampler(server.pid, SAMPLE_INTERVAL) as sampler:
                    run = await inputs.run_job(client, headers, {
                        "voice_object": objects["voice"], "background_object": objects["background"],
                        "source_language": "en", "target_languages": ["es"]}, timeout=3600)
                tasks = (await client.get(f"/v1/jobs/{run.job_id}", headers=headers)).json()["tasks"]
    return {"minutes": minutes, "status": run.status, "wall_seconds": round(run.wall_seconds, 1),
            "errors": [t["error"] for t in tasks if t.get("error")],
            "tree_idle_rss_mib": round(idle.peak_rss_kib / 1024, 1), **sampler.figures(),
            "timeline_rss_mib": [(t, round(k / 1024)) for t, k in sampler.timeline]}


def _verdict(short: dict[str, Any], long: dict[str, Any]) -> dict[str, Any]:
    growth = long["peak_rss_mib"] / short["peak_rss_mib"]
    return {"short_minutes": short["minutes"], "long_minutes": long["minutes"],
            "short_peak_rss_mib": short["peak_rss_mib"], "long_peak_rss_mib": long["peak_rss_mib"],
            "short_peak_pss_mib": short["peak_pss_mib"], "long_peak_pss_mib": long["peak_pss_mib"],
            "growth": round(growth, 2), "growth_target": GROWTH_TARGET, "growth_met": growth <= GROWTH_TARGET,
            "absolute_target_mib": ABSOLUTE_TARGET_MIB, "absolute_met": long["peak_rss_mib"] < ABSOLUTE_TARGET_MIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pipeline 1 min; mixing / stt 0.5 vs 3 min")
    parser.add_argument("--short", type=float, default=None, help="short length in minutes (default 5)")
    parser.add_argument("--long", type=float, default=None, help="long length in minutes (default 60)")
    parser.add_argument("--pipeline-minutes", type=float, nargs="*", default=None,
                        help="whole-pipeline lengths to run (default: the short length only)")
    parser.add_argument("--child-mixing", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--whole-file-front-end", action="store_true",
                        help="also replay faster-whisper's decode + VAD + features on the whole file (what the "
                             "service did before it transcribed long inputs in windows)")
    parser.add_argument("--child-stt", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-whisper", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_mixing:
        _child_mixing(float(args.child_mixing[0]), float(args.child_mixing[1]), args.child_mixing[2])
        return
    if args.child_stt:
        _child_stt(*args.child_stt)
        return
    if args.child_whisper:
        _child_whisper(*args.child_whisper)
        return

    short = args.short or (0.5 if args.quick else 5.0)
    long = args.long or (3.0 if args.quick else 60.0)
    pipeline_minutes = args.pipeline_minutes or ([1.0] if args.quick else [short, long])
    clip_source = 60.0 if args.quick else 600.0
    started = time.perf_counter()
    results: dict[str, Any] = {"benchmark": "memory_peak", "quick": args.quick, "environment": machine.environment(),
                               "sampling": f"VmRSS (and PSS) of the root and every descendant from /proc, every "
                                           f"{int(SAMPLE_INTERVAL * 1000)} ms",
                               "input": "mono 48 kHz PCM_16 English voice + stereo 48 kHz PCM_16 background"}

    print("preparing inputs (cached after the first run)...", flush=True)
    for minutes in {short, long}:
        inputs.make_background(minutes * 60.0)
        inputs.make_voice(minutes * 60.0)
    inputs.make_target_clips(inputs.make_voice(clip_source), "es")

    results["pipeline"] = []
    for minutes in pipeline_minutes:
        figures = asyncio.run(measure_pipeline(minutes))
        results["pipeline"].append(figures)
        print(f"\npipeline, {minutes:g} min, es, whole service tree: peak RSS {figures['peak_rss_mib']:.0f} MiB "
              f"(PSS {figures['peak_pss_mib']:.0f}; idle before the job {figures['tree_idle_rss_mib']:.0f}), "
              f"{figures['wall_seconds']} s, {figures['status']} {figures['errors'] or ''}")
        print(f"  at the peak: {figures['rss_breakdown_at_peak_mib']}")
    if len(results["pipeline"]) > 1:
        results["pipeline_verdict"] = _verdict(results["pipeline"][0], results["pipeline"][-1])
        print(f"\nwhole pipeline: {results['pipeline_verdict']}")

    results["mixing"] = {}
    for minutes in (short, long):
        figures = measure_mixing(minutes, clip_source)
        results["mixing"][str(minutes)] = figures
        print(f"\nmixing path (build_voice_track + mix in a pool worker), {minutes:g} min: peak RSS "
              f"{figures['peak_rss_mib']:.0f} MiB (PSS {figures['peak_pss_mib']:.0f}; idle "
              f"{figures['tree_idle_rss_mib']:.0f}), the worker's own peak "
              f"{figures['worker']['worker_peak_rss_mib']:.0f} "
              f"MiB, {figures['worker']['wall_seconds']} s")
        print(f"  at the peak: {figures['rss_breakdown_at_peak_mib']}")
    results["mixing_verdict"] = _verdict(results["mixing"][str(short)], results["mixing"][str(long)])

    results["stt"] = {}
    for minutes in (short, long):
        figures = measure_stt_front_end(minutes, "--child-whisper")
        results["stt"][str(minutes)] = figures
        print(f"\nstt: the service's Whisper call (engines.offline.whisper.transcribe_file) in a fresh process, "
              f"{minutes:g} min: peak RSS {figures['peak_rss_mib']:.0f} MiB, {figures['steps']['seconds']} s, "
              f"{figures['steps']['segments']} segments")
    results["stt_verdict"] = _verdict(results["stt"][str(short)], results["stt"][str(long)])

    if args.whole_file_front_end:
        results["whole_file_front_end"] = {}
        for minutes in (short, long):
            figures = measure_stt_front_end(minutes)
            results["whole_file_front_end"][str(minutes)] = figures
            steps = figures["steps"]
            print(f"\nfaster-whisper front end on the whole file (decode + VAD + features), {minutes:g} min: peak "
                  f"RSS {figures['peak_rss_mib']:.0f} MiB; process peak after decode "
                  f"{steps['peak_rss_after_decode_mib']:.0f}, VAD {steps['peak_rss_after_vad_mib']:.0f}, features "
                  f"{steps['peak_rss_after_features_mib']:.0f} MiB "
                  f"({steps['decode_seconds']} + {steps['vad_seconds']} + {steps['features_seconds']} s)")

    # The worker that ran Whisper keeps what it reached, so the pipeline peaks during or after stt (see the
    # breakdown at the peak): a long job's peak is estimated as the short job's plus what Whisper grows by.
    short_pipeline = next((p for p in results["pipeline"] if p["minutes"] == short), None)
    if short_pipeline is not None:
        growth_mib = results["stt"][str(long)]["peak_rss_mib"] - results["stt"][str(short)]["peak_rss_mib"]
        results["pipeline_long_estimate"] = {
            "minutes": long, "estimated_peak_rss_mib": round(short_pipeline["peak_rss_mib"] + max(growth_mib, 0.0), 1),
            "how": f"measured {short:g}-minute pipeline peak + (Whisper call peak at {long:g} min - at {short:g} min); "
                   "the mixing path does not grow (measured above)"}

    v = results["mixing_verdict"]
    w = results["stt_verdict"]
    print("\n=== summary")
    for name, x in (("mixing path", v), ("stt Whisper call", w)):
        print(f"{name}: {short:g} min {x['short_peak_rss_mib']:.0f} MiB -> {long:g} min {x['long_peak_rss_mib']:.0f} "
              f"MiB = {x['growth']:.2f}x (target <= {GROWTH_TARGET}x: {'MET' if x['growth_met'] else 'NOT MET'}); "
              f"under 1 GiB: {'MET' if x['absolute_met'] else 'NOT MET'}")
    for p in results["pipeline"]:
        print(f"whole pipeline {p['minutes']:g} min (measured): {p['peak_rss_mib']:.0f} MiB RSS summed over the tree "
              f"({p['peak_pss_mib']:.0f} MiB PSS)")
    if "pipeline_long_estimate" in results:
        e = results["pipeline_long_estimate"]
        print(f"whole pipeline {long:g} min (estimated, not run): ~{e['estimated_peak_rss_mib']:.0f} MiB RSS "
              f"(vs {short:g} min: {e['estimated_peak_rss_mib'] / short_pipeline['peak_rss_mib']:.2f}x)")  # type: ignore[index]
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    write_results("memory_peak", results, quick=args.quick)


if __name__ == "__main__":
    main()
