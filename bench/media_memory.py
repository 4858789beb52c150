"""Peak memory of the service's process tree for a short and a long media job (a video with one mixed soundtrack),
through the real `dubbing serve` (issue 20: the 60-minute peak <= 1.5 x the 5-minute peak).

Each length is a generated MP4: a 160x120 test pattern at 25 fps (libx264 ultrafast) and one stereo AAC track,
espeak-ng English sentences with natural pauses (`_lib/inputs.make_voice`) over a music-like chord bed
(`_lib/inputs.make_background`) about 6 dB under the speech. Every length gets a fresh `dubbing serve`
(CPU_WORKERS=2, its own scratch database and data folder), uploads the video as kind `media` and dubs it into
Spanish with `"offline_voice": "fast"` (to keep a long job affordable; the separation, Whisper, the bed, the mix
and the remux are what a media job adds, and they are all here). The tree (service, forkserver, pool workers and
every ffmpeg / espeak-ng / apertium below them) is sampled every 50 ms from /proc (VmRSS summed; PSS too) from
job creation to `done`; a progress file is written every 30 s so that a run stopped early still says how far
it got and its peak so far. CPU seconds of the tree (own + reaped children, live processes at the end) are
reported beside the wall time, with the load average.

    .venv/bin/python bench/media_memory.py                       # 5 and 60 minutes
    .venv/bin/python bench/media_memory.py --minutes 5 20        # what fits in the time there is
    .venv/bin/python bench/media_memory.py --quick               # 1 and 3 minutes
    .venv/bin/python bench/media_memory.py --steps --minutes 5 60  # the media steps alone, each in a fresh process

`--steps` replays the media job's own pool steps outside the service, each in a fresh process sampled the same
way: the soundtrack taken out (`extract_soundtrack`, mono 48 kHz and all channels), the masked background
(`separation.background`, the clean voice standing in for DeepFilterNet3's isolated voice), the windowed bed
(`windowed_bed`) and the dubbed video (`encode_dub_track` + `mux_video`). Whisper's growth is memory_peak.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from _lib import ADMIN_URL, inputs, machine, servers
from _lib.results import RESULTS_DIR, write_results

from tests.support import scratch_database

GROWTH_TARGET = 1.5
SAMPLE_INTERVAL = 0.05
SPEECH_OVER_BED_DB = 6.0
MEDIA_DIR = inputs.INPUTS_DIR


def _rms(path: Path, seconds: float = 120.0) -> float:
    with sf.SoundFile(path) as f:
        x = f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True)[:, 0]
    active = np.abs(x) > 1e-3
    return float(np.sqrt(np.mean(np.square(x[active] if active.any() else x, dtype=np.float64))))


def make_media(minutes: float) -> Path:
    """The MP4 of `minutes` (cached beside the generated voices)."""
    seconds = minutes * 60.0
    out = MEDIA_DIR / f"media_{int(seconds)}s_v1" / "talk.mp4"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    voice = inputs.make_voice(seconds)
    bed = inputs.make_background(seconds)
    bed_gain_db = 20 * np.log10(_rms(voice.path) / _rms(bed)) - SPEECH_OVER_BED_DB
    subprocess.run(["nice", "-n", "10", "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=25:duration={seconds:.3f}",
                    "-i", str(voice.path), "-i", str(bed),
                    "-filter_complex", f"[1:a]pan=stereo|c0=c0|c1=c0[v];[2:a]volume={bed_gain_db:.2f}dB[b];"
                                       "[v][b]amix=inputs=2:normalize=0:duration=first[a]",
                    "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "128k", "-shortest", "-movflags", "+faststart", str(out) + ".part.mp4"],
                   check=True)
    os.replace(str(out) + ".part.mp4", out)
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and its live descendants, each with the children it has reaped."""
    return sum(sum(machine.proc_cpu_seconds(pid)) for pid in machine.process_tree(root))


def _progress_writer(path: Path, sampler: machine.TreeMemorySampler, minutes: float, stop: threading.Event,
                     started: float) -> None:
    while not stop.wait(30.0):
        path.write_text(json.dumps({"minutes": minutes, "elapsed_seconds": round(time.monotonic() - started),
                                    "load_average": machine.load_average(), **sampler.figures(),
                                    "timeline_rss_mib": [(t, round(k / 1024)) for t, k in sampler.timeline[::5]]}))


async def measure(minutes: float, progress_path: Path) -> dict[str, Any]:
    media = make_media(minutes)
    async with scratch_database(ADMIN_URL, "bench_media_mem") as url:
        with tempfile.TemporaryDirectory(prefix="bench-media-mem-") as tmp:
            async with servers.serving("dubbing", url, Path(tmp), CPU_WORKERS="2") as server, \
                    httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
                headers = servers.auth("bench")
                objects = await inputs.upload_files(client, headers, {"media": media})
                await asyncio.sleep(5)  # start-up loads Whisper into the workers in the background
                idle = machine.TreeMemorySampler(server.pid, SAMPLE_INTERVAL)
                idle.sample()
                cpu_before = tree_cpu_seconds(server.pid)
                load_before = machine.load_average()
                stop = threading.Event()
                with machine.TreeMemorySampler(server.pid, SAMPLE_INTERVAL) as sampler:
                    writer = threading.Thread(target=_progress_writer, daemon=True,
                                              args=(progress_path, sampler, minutes, stop, time.monotonic()))
                    writer.start()
                    try:
                        run = await inputs.run_job(client, headers, {
                            "media_object": objects["media"], "source_language": "en", "target_languages": ["es"],
                            "offline_voice": "fast"}, timeout=4 * 3600)
                    finally:
                        stop.set()
                    cpu = tree_cpu_seconds(server.pid) - cpu_before
                job = (await client.get(f"/v1/jobs/{run.job_id}", headers=headers)).json()
                conn = await _connect(url)
                try:
                    timing = await inputs.stage_times(conn, run.job_id)
                finally:
                    await conn.close()
    return {"minutes": minutes, "media_bytes": media.stat().st_size, "status": run.status,
            "wall_seconds": round(run.wall_seconds, 1), "cpu_seconds_tree": round(cpu, 1),
            "load_average_before": load_before, "load_average_after": machine.load_average(),
            "errors": [t["error"] for t in job["tasks"] if t.get("error")],
            "stage_seconds": {lang: t["stages"] for lang, t in timing["tasks"].items()},
            "tree_idle_rss_mib": round(idle.peak_rss_kib / 1024, 1), **sampler.figures(),
            "timeline_rss_mib": [(t, round(k / 1024)) for t, k in sampler.timeline]}


# ------------------------------------------------------------------ the media job's own steps, one child each
STEPS = ("extract", "background", "bed", "remux")


def _child_step(step: str, minutes: float, folder: str, out_json: str) -> None:
    """One pool step of a media job on the `minutes` input, as the stages call it (files in `folder`)."""
    from service.audio import media_files, separation

    work = Path(folder)
    media = make_media(minutes)
    voice = inputs.make_voice(minutes * 60.0)
    started = time.perf_counter()
    if step == "extract":  # the separation's mono 48 kHz soundtrack and the bed's original (all channels)
        media_files.extract_soundtrack(str(media), str(work / "soundtrack-48k.wav"), 48000, 1)
        media_files.extract_soundtrack(str(media), str(work / "original.wav"), 48000, None)
    elif step == "background":  # the masked background; the clean voice stands in for DFN3's isolated voice
        separation.background(str(work / "soundtrack-48k.wav"), str(voice.path),
                              [(a, b) for a, b, _ in voice.lines], str(work / "background.wav"))
    elif step == "bed":
        media_files.windowed_bed(str(work / "original.wav"), str(work / "background.wav"), 30.0,
                                 minutes * 60.0 - 30.0, str(work / "bed.wav"))
    elif step == "remux":  # the bed stands in for the dubbed master
        track = work / media_files.dub_track_name("mp4")
        codec = media_files.encode_dub_track(str(work / "bed.wav"), "mp4", str(track))
        vtt = work / "captions.vtt"
        vtt.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nHola\n")
        media_files.mux_video(str(media), media_files.VideoTracks(str(track), str(vtt), "spa", "eng", "aac", codec),
                              "mp4", str(work / "dubbed.mp4"))
    Path(out_json).write_text(json.dumps({"seconds": round(time.perf_counter() - started, 2),
                                          "vm_hwm_mib": round(machine.vm_hwm_kib() / 1024, 1)}))


def measure_steps(minutes: float) -> dict[str, Any]:
    """Peak RSS of each media step's process tree (the Python process and its ffmpegs), in a fresh process."""
    import sys

    make_media(minutes)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-media-steps-") as folder:
        for step in STEPS:
            with tempfile.NamedTemporaryFile(suffix=".json") as result:
                proc = subprocess.Popen([sys.executable, __file__, "--child-step", step, str(minutes), folder,
                                         result.name])
                with machine.TreeMemorySampler(proc.pid, SAMPLE_INTERVAL) as sampler:
                    proc.wait()
                if proc.returncode != 0:
                    raise RuntimeError(f"step {step} failed with {proc.returncode}")
                figures = json.loads(Path(result.name).read_text())
            out[step] = {**figures, "peak_rss_mib": round(sampler.peak_rss_kib / 1024, 1),
                         "rss_breakdown_at_peak_mib": sampler.figures()["rss_breakdown_at_peak_mib"]}
            print(f"  {minutes:g} min, {step}: peak RSS {out[step]['peak_rss_mib']:.0f} MiB "
                  f"({out[step]['rss_breakdown_at_peak_mib']}), {figures['seconds']} s", flush=True)
    return out


async def _connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=None, help="lengths, shortest first")
    parser.add_argument("--quick", action="store_true", help="1 and 3 minutes")
    parser.add_argument("--steps", action="store_true",
                        help="only the media job's own pool steps (extract, background mask, bed, remux), each in a "
                             "fresh process, at every length (no service, no Whisper, no DeepFilterNet3)")
    parser.add_argument("--child-step", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_step:
        _child_step(args.child_step[0], float(args.child_step[1]), args.child_step[2], args.child_step[3])
        return
    lengths = args.minutes or ([1.0, 3.0] if args.quick else [5.0, 60.0])
    results: dict[str, Any] = {"benchmark": "media_memory", "environment": machine.environment(),
                               "sampling": f"VmRSS (and PSS) of the service tree from /proc every "
                                           f"{int(SAMPLE_INTERVAL * 1000)} ms, job creation to done",
                               "input": "MP4, 160x120 testsrc h264 25 fps, stereo AAC 128k: espeak-ng English "
                                        f"sentences {SPEECH_OVER_BED_DB:g} dB over a chord bed; es, offline_voice "
                                        "fast, CPU_WORKERS=2",
                               "runs": []}
    name = "media_memory.quick" if args.quick else "media_memory"
    if args.steps:
        steps = {f"{m:g}": measure_steps(m) for m in lengths}
        short, long = steps[f"{lengths[0]:g}"], steps[f"{lengths[-1]:g}"]
        results["steps"] = steps
        results["steps_growth"] = {step: round(long[step]["peak_rss_mib"] / short[step]["peak_rss_mib"], 3)
                                   for step in STEPS}
        print(f"growth {lengths[0]:g} -> {lengths[-1]:g} min per step: {results['steps_growth']}")
        write_results("media_memory_steps", results, quick=args.quick)
        return
    for minutes in lengths:
        progress = RESULTS_DIR / f"{name}.progress-{minutes:g}min.json"
        figures = asyncio.run(measure(minutes, progress))
        progress.unlink(missing_ok=True)
        results["runs"].append(figures)
        print(f"{minutes:g} min: peak RSS {figures['peak_rss_mib']:.0f} MiB (PSS {figures['peak_pss_mib']:.0f}; idle "
              f"{figures['tree_idle_rss_mib']:.0f}), {figures['status']} in {figures['wall_seconds']} s wall, "
              f"{figures['cpu_seconds_tree']} CPU-s, load {figures['load_average_before']} -> "
              f"{figures['load_average_after']}; at the peak {figures['rss_breakdown_at_peak_mib']}; stages "
              f"{figures['stage_seconds']}", flush=True)
        if len(results["runs"]) > 1:
            short, long = results["runs"][0], results["runs"][-1]
            growth = long["peak_rss_mib"] / short["peak_rss_mib"]
            results["verdict"] = {"short_minutes": short["minutes"], "long_minutes": long["minutes"],
                                  "growth_rss": round(growth, 3),
                                  "growth_pss": round(long["peak_pss_mib"] / short["peak_pss_mib"], 3),
                                  "growth_target": GROWTH_TARGET, "met": growth <= GROWTH_TARGET}
            print(f"growth {short['minutes']:g} -> {long['minutes']:g} min: {growth:.2f}x (target <= "
                  f"{GROWTH_TARGET}x)", flush=True)
        write_results("media_memory", results, quick=args.quick)


if __name__ == "__main__":
    main()
