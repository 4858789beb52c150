"""Real-time factor of the whole pipeline (stt -> translating -> dubbing -> mixing -> exporting) through the API.

Measured as a user runs it: the real `dubbing serve` process (`_lib.servers.serving("dubbing", ...)`: its
default event loop and production settings, `CPU_WORKERS=2`, offline engines) against a scratch database on
the local PostgreSQL, driven over HTTP (signed uploads, `POST /v1/jobs`, the SSE progress stream). The input is
N minutes of real read English speech (`_lib/real_speech.py`: Debian's asterisk-core-sounds-en-g722 prompts and
pocketsphinx-testdata's LibriVox sentences; `--voice synthetic` for espeak-ng sentences instead) and an
N-minute stereo 48 kHz music-like bed. One warm-up job (the 15 s demo sample) runs first so first-use costs
are not billed to the measured jobs.

Measured per job: wall time from `POST /v1/jobs` to the SSE `done` event, per-task stage durations from the
`task_events` table (time between consecutive `stage` events), and the average number of busy cores in each
stage window, split by process (psutil, rooted at the server's pid). Then the same input with 2 and 3 target
languages, to see what each extra language costs.

Targets: RTF (audio seconds / wall seconds) >= 10 for one language; each extra language <= 25 % of the
one-language wall time. With `--source es` (fr, it, ru) the voice is the Asterisk prompts read in that language
(`make_real_voice(language=...)`), the job says `source_language: "auto"` (detection, then the multilingual
Whisper base), the targets are what `GET /v1/languages` offers from that source (direct or pivot), a second
warm-up job (30 s of that language, auto) comes first, results go to pipeline_rtf_<lang>.json, and the
target for a non-English source is >= 5x.

    .venv/bin/python bench/pipeline_rtf.py            # 10-minute input, es / es+ca / es+ca+eo
    .venv/bin/python bench/pipeline_rtf.py --quick    # 1-minute input, same runs
    .venv/bin/python bench/pipeline_rtf.py --source es --max-languages 1 --whisper-variants none
    .venv/bin/python bench/pipeline_rtf.py --max-languages 1 --offline-voices fast,natural   # issue 25

With `--offline-voices`, each job of each language count is run once per offline voice the job may ask for
(natural = Kokoro-82M, fast = espeak-ng; OFFLINE_VOICE=auto), one after the other on the same server (the
mixed-input row too), so the voices compare on one machine state; results go to pipeline_rtf_voices.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _lib import ADMIN_URL, inputs, machine, servers
from _lib.real_speech import make_real_voice
from _lib.results import write_results

from tests.support import database_name, scratch_database

RTF_TARGET = 10.0
RTF_TARGET_OTHER_SOURCE = 5.0  # issue 24: a non-English job, detection and the multilingual model included
EXTRA_LANGUAGE_TARGET = 0.25
STAGES = ("queued", "stt", "translating", "dubbing", "mixing", "exporting")
WANTED = {"en": ("es", "ca", "eo"), "es": ("ca", "en", "pt"), "fr": ("es", "ca", "en"), "it": ("es", "ca", "en"),
          "ru": ("en", "es")}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60.0
    t0 = time.perf_counter()
    source = args.source
    voice = (make_real_voice(seconds, language=source) if args.voice == "real" else inputs.make_voice(seconds))
    background = inputs.make_background(seconds)
    print(f"inputs: {seconds:.0f} s {args.voice} voice ({len(voice.lines)} lines, {voice.speech_seconds:.0f} s of "
          f"speech) + stereo background, ready in {time.perf_counter() - t0:.1f} s")

    described = ("real read speech (Allison Smith IVR prompts, LibriVox), mono 48 kHz PCM_16 WAV"
                 if args.voice == "real" else "espeak-ng en-us sentences, mono 48 kHz PCM_16 WAV")
    if source != "en":
        described = (f"real read {source} speech (Debian asterisk-core-sounds-{source}-g722 prompts), mono 48 kHz "
                     "PCM_16 WAV; the job says source_language auto")
    results: dict[str, Any] = {"source_language": source, "input": {"seconds": seconds, "lines": len(voice.lines),
                                         "speech_seconds": round(voice.speech_seconds, 1), "voice": described,
                                         "background": "stereo 48 kHz PCM_16 WAV"},
                               "server": "dubbing serve (its default loop and settings), CPU_WORKERS=2",
                               "runs": []}
    async with scratch_database(ADMIN_URL, "bench_rtf") as url:
        with tempfile.TemporaryDirectory(prefix="bench-rtf-") as tmp:
            data_dir = Path(tmp)
            async with servers.serving("dubbing", url, data_dir, CPU_WORKERS="2") as server, \
                    httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
                conn = await asyncpg.connect(url)
                try:
                    headers = servers.auth("bench")
                    catalog = (await client.get("/v1/languages", headers=headers)).json()
                    offered = {s["code"]: s["targets"] for s in catalog["sources"]}
                    targets_offered = offered.get(source, [])
                    wanted = [lang for lang in WANTED.get(source, ()) if lang in targets_offered] or targets_offered
                    wanted = wanted[:args.max_languages]
                    if not wanted:
                        raise RuntimeError(f"GET /v1/languages offers no target from {source}: {catalog}")
                    results[f"supported_targets_from_{source}"] = targets_offered
                    results["catalog"] = catalog
                    print(f"targets offered from {source}: {', '.join(targets_offered)}; measuring "
                          f"{', '.join(wanted)}")

                    english_target = wanted[0] if source == "en" else offered.get("en", ["es"])[0]
                    await inputs.warm_up(client, headers, data_dir / "warmup", english_target)
                    if source != "en":
                        await inputs.warm_up_language(client, headers, source, wanted[0])

                    objects = await inputs.upload_files(client, headers,
                                                        {"voice": voice.path, "background": background})
                    runs = [(count, voice) for count in range(1, 0 if args.mixed_only else len(wanted) + 1)
                            for voice in (args.offline_voices.split(",") if args.offline_voices else [None])]
                    for count, offline_voice in runs:
                        targets = wanted[:count]
                        asked = {} if offline_voice is None else {"offline_voice": offline_voice}
                        busy = await machine.wait_for_quiet(args.quiet_wait, threshold=0.15)
                        with machine.CpuSampler(root=server.pid, db_name=database_name(url)) as cpu:
                            run = await inputs.run_job(client, headers, {
                                "voice_object": objects["voice"], "background_object": objects["background"],
                                "source_language": "en" if source == "en" else "auto",
                                "target_languages": targets, **asked}, timeout=3600)
                        job = (await client.get(f"/v1/jobs/{run.job_id}", headers=headers)).json()
                        timing = await inputs.stage_times(conn, run.job_id)
                        record = _record(run, targets, timing, cpu, seconds, data_dir / "scratch")
                        record["machine_busy_before"] = busy
                        record["offline_voice"] = offline_voice
                        record["job"] = {k: v for k, v in job.items() if "language" in k or k == "tasks"}
                        record["transcriptions"] = await conn.fetchval(
                            "SELECT count(*) FROM task_events WHERE job_id = $1 AND kind = 'artifact' "
                            "AND data->'artifact'->>'kind' = 'transcript_json'", uuid.UUID(run.job_id))
                        results["runs"].append(record)
                        _print_run(record)
                    if source == "en":  # the mixed-input row: the same voice and bed as one media soundtrack
                        mixed = _mixed_soundtrack(voice.path, background, data_dir / "mixed.wav")
                        media = await inputs.upload_files(client, headers, {"media": mixed})
                        for offline_voice in (args.offline_voices.split(",") if args.offline_voices else [None]):
                            asked = {} if offline_voice is None else {"offline_voice": offline_voice}
                            await machine.wait_for_quiet(args.quiet_wait, threshold=0.15)
                            with machine.CpuSampler(root=server.pid, db_name=database_name(url)) as cpu:
                                run = await inputs.run_job(client, headers, {
                                    "media_object": media["media"], "source_language": "en",
                                    "target_languages": wanted[:1], **asked}, timeout=3600)
                            timing = await inputs.stage_times(conn, run.job_id)
                            record = _record(run, wanted[:1], timing, cpu, seconds, data_dir / "scratch")
                            record["input"] = ("the voice and the bed mixed into one soundtrack (speech 6 dB over "
                                               "the bed)")
                            record["offline_voice"] = offline_voice
                            key = "mixed_input" if offline_voice is None else f"mixed_input_{offline_voice}"
                            results[key] = record
                            print("\nmixed input (media_object: one soundtrack, separated by the service):")
                            _print_run({**record, "transcriptions": "?"})
                finally:
                    await conn.close()
    return results


def _mixed_soundtrack(voice: Path, background: Path, out: Path) -> Path:
    """The voice over the bed in one stereo WAV, the bed 6 dB under the speech (RMS where the voice speaks)."""
    import numpy as np
    import soundfile as sf

    speech, rate = sf.read(voice, dtype="float32")
    bed, _ = sf.read(background, dtype="float32", always_2d=True)
    n = min(len(speech), len(bed))
    spoken = speech[:n][np.abs(speech[:n]) > 1e-4]
    scale = float(np.sqrt(np.mean(spoken ** 2)) / np.sqrt(np.mean(bed[:n] ** 2))) / 10 ** (6 / 20)
    mixed = bed[:n] * scale + speech[:n, None]
    sf.write(out, mixed / max(1.0, float(np.max(np.abs(mixed)))), rate, subtype="PCM_16")
    return out


def _record(run: inputs.JobRun, targets: list[str], timing: dict[str, Any], cpu: machine.CpuSampler,
            seconds: float, scratch: Path) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for language in targets:
        task = timing["tasks"][language]
        busy = {stage: cpu.busy_cores(a, b) for stage, (a, b) in task["windows"].items()}
        who = {stage: cpu.breakdown(a, b) for stage, (a, b) in task["windows"].items()}
        tasks[language] = {"stage_seconds": task["stages"], "busy_cores": busy, "cores_by_process": who,
                           "entered": {s: round(at - run.submitted_at, 3) for s, at in task["entered"]},
                           **inputs.scratch_figures(scratch, run.job_id, language)}
    return {
        "targets": targets,
        "status": run.status,
        "wall_seconds": round(run.wall_seconds, 2),
        "create_request_seconds": round(run.created_at - run.submitted_at, 3),
        "rtf": round(seconds / run.wall_seconds, 2),
        "busy_cores_whole_job": cpu.busy_cores(run.submitted_at, run.done_at),
        "foreign_busy_cores": cpu.foreign_cores(run.submitted_at, run.done_at),
        "cores_by_process_whole_job": cpu.breakdown(run.submitted_at, run.done_at),
        "cpu_seconds_whole_job": cpu.cpu_seconds(run.submitted_at, run.done_at),
        "tasks": tasks,
    }


def _print_run(record: dict[str, Any]) -> None:
    voice = f" ({record['offline_voice']} voice)" if record.get("offline_voice") else ""
    print(f"\n{'+'.join(record['targets'])}{voice}: {record['status']}, wall {record['wall_seconds']:.1f} s "
          f"(POST /v1/jobs {record['create_request_seconds']:.2f} s), RTF {record['rtf']:.2f}x, "
          f"{record['busy_cores_whole_job']} cores busy on average ({record['foreign_busy_cores']} by other "
          f"processes); transcribed {record['transcriptions']}x; CPU-seconds used by the service, its children, "
          f"its pool and its database: {record['cpu_seconds_whole_job']['measured_tree_total']}")
    print(f"  {'task':6}" + "".join(f"{s:>13}" for s in STAGES) + "   segments faster stretched overflow")
    for language, task in record["tasks"].items():
        cells = "".join(
            f"{task['stage_seconds'].get(s, float('nan')):8.2f}s" + (
                f"/{task['busy_cores'].get(s):.1f}" if task["busy_cores"].get(s) is not None else "    ")
            for s in STAGES)
        print(f"  {language:6}{cells}   {task.get('segments', '?'):>8} {task.get('respoken_faster', '?'):>7} "
              f"{task.get('time_stretched', '?'):>9} {task.get('overflowed', '?'):>8}")
    print("  (seconds per stage / average busy cores of 2 in that window)")
    first = record["targets"][0]
    print(f"  who used the cores in {first}'s stage windows (average cores): "
          "service = event loop, service_children = espeak-ng/ffmpeg/apertium it starts, pool = process-pool "
          "workers (Whisper, numpy), pool_children = their ffmpeg, postgres = this job's database backends")
    for stage, who in record["tasks"][first]["cores_by_process"].items():
        if who and stage != "queued":
            print(f"    {stage:12} " + ", ".join(f"{k} {v:.2f}" for k, v in who.items() if v >= 0.01))


def summarise(results: dict[str, Any]) -> None:
    runs = results["runs"]
    for key in [k for k in results if k.startswith("mixed_input") and not k.endswith("_summary")]:
        mixed = results[key]
        results[f"{key}_summary"] = {"rtf": mixed["rtf"], "wall_seconds": mixed["wall_seconds"],
                                     "offline_voice": mixed.get("offline_voice"),
                                     "stage_seconds": mixed["tasks"][mixed["targets"][0]]["stage_seconds"]}
        voice = f", {mixed['offline_voice']} voice" if mixed.get("offline_voice") else ""
        print(f"mixed input (one soundtrack, separated{voice}): RTF {mixed['rtf']:.2f}x real time (target >= 8x)")
    if not runs:
        return
    if any(r.get("offline_voice") for r in runs):
        _summarise_voices(results)
        return
    base = runs[0]["wall_seconds"]
    overheads = []
    for prev, cur in itertools.pairwise(runs):
        extra = (cur["wall_seconds"] - prev["wall_seconds"]) / base
        overheads.append({"from": "+".join(prev["targets"]), "to": "+".join(cur["targets"]),
                          "added_seconds": round(cur["wall_seconds"] - prev["wall_seconds"], 2),
                          "added_fraction_of_one_language": round(extra, 3),
                          "meets_target": extra <= EXTRA_LANGUAGE_TARGET})
    cpu_base = runs[0]["cpu_seconds_whole_job"]["measured_tree_total"]
    for o, (prev, cur) in zip(overheads, itertools.pairwise(runs), strict=True):
        added_cpu = cur["cpu_seconds_whole_job"]["measured_tree_total"] - prev["cpu_seconds_whole_job"][
            "measured_tree_total"]
        o["added_cpu_seconds"] = round(added_cpu, 1)
        o["added_cpu_fraction_of_one_language"] = round(added_cpu / cpu_base, 3)
    one = runs[0]
    stages = one["tasks"][one["targets"][0]]["stage_seconds"]
    dominant = max((s for s in STAGES if s in stages), key=lambda s: stages[s])
    target = RTF_TARGET if results.get("source_language", "en") == "en" else RTF_TARGET_OTHER_SOURCE
    results["summary"] = {
        "source_language": results.get("source_language", "en"),
        "rtf_one_language": one["rtf"],
        "rtf_target": target,
        "rtf_meets_target": one["rtf"] >= target,
        "stage_seconds_one_language": stages,
        "dominant_stage_one_language": dominant,
        "extra_language_overhead": overheads,
        "extra_language_target": EXTRA_LANGUAGE_TARGET,
        "runs": [{"targets": r["targets"], "wall_seconds": r["wall_seconds"], "rtf": r["rtf"],
                  "cpu_seconds": r["cpu_seconds_whole_job"]["measured_tree_total"],
                  "transcriptions": r["transcriptions"], "other_processes_busy_cores": r["foreign_busy_cores"]}
                 for r in runs],
    }
    print("\n=== summary")
    print(f"RTF, one language: {one['rtf']:.2f}x real time (target >= {target:g}x): "
          f"{'MET' if one['rtf'] >= target else 'NOT MET'}; dominant stage: {dominant} "
          f"({stages[dominant]:.1f} s of {one['wall_seconds']:.1f} s)")
    for r in runs:
        print(f"{'+'.join(r['targets']):10} wall {r['wall_seconds']:7.1f} s, RTF {r['rtf']:5.2f}x, Whisper ran "
              f"{r['transcriptions']}x, other processes on the machine used {r['foreign_busy_cores']} cores "
              "meanwhile")
    for o in overheads:
        added = 100 * o["added_fraction_of_one_language"]
        print(f"{o['from']} -> {o['to']}: +{o['added_seconds']:.1f} s = {added:.0f} % "
              f"of the one-language time (target <= {100 * EXTRA_LANGUAGE_TARGET:.0f} %): "
              f"{'MET' if o['meets_target'] else 'NOT MET'}; in CPU-seconds (independent of other load): "
              f"+{o['added_cpu_seconds']:.0f} = {100 * o['added_cpu_fraction_of_one_language']:.0f} %")


def _summarise_voices(results: dict[str, Any]) -> None:
    """Each offline voice's wall time and RTF for the same job, and natural's cost against fast's."""
    by_voice = {(r["offline_voice"], "+".join(r["targets"])): r for r in results["runs"]}
    results["summary"] = {"runs": [{"offline_voice": v, "targets": t, "wall_seconds": r["wall_seconds"],
                                    "rtf": r["rtf"], "cpu_seconds": r["cpu_seconds_whole_job"]["measured_tree_total"],
                                    "other_processes_busy_cores": r["foreign_busy_cores"]}
                                   for (v, t), r in by_voice.items()]}
    print("\n=== summary (offline voices)")
    for row in results["summary"]["runs"]:
        print(f"{row['targets']:10} {row['offline_voice']:8} wall {row['wall_seconds']:7.1f} s, "
              f"RTF {row['rtf']:5.2f}x, CPU {row['cpu_seconds']:.0f} s, "
              f"other processes {row['other_processes_busy_cores']} cores")
    for targets in {t for _, t in by_voice}:
        if ("natural", targets) in by_voice and ("fast", targets) in by_voice:
            natural, fast = by_voice[("natural", targets)], by_voice[("fast", targets)]
            ratio = natural["wall_seconds"] / fast["wall_seconds"]
            results["summary"][f"natural_over_fast_wall_{targets}"] = round(ratio, 2)
            print(f"{targets}: natural takes {ratio:.2f}x the fast voice's wall time")


WHISPER_VARIANTS = {
    # name: keyword arguments for WhisperModel(...) and model.transcribe(...); "service" is what
    # service/engines/offline/whisper.py uses (cpu_threads unset = CTranslate2's default of 4 threads)
    "service (beam 5, words, 4 threads)": ({}, {}),
    "beam 5, words, 2 threads": ({"cpu_threads": 2}, {}),
    "beam 1, words, 2 threads": ({"cpu_threads": 2}, {"beam_size": 1}),
    "beam 1, no words, 2 threads": ({"cpu_threads": 2}, {"beam_size": 1, "word_timestamps": False}),
    # faster-whisper's BatchedInferencePipeline: its own VAD cuts <= 30 s chunks, decoded 8 at a time
    "batched 8, beam 5, words, 2 threads": ({"cpu_threads": 2}, {"batch_size": 8}),
}


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def _wer(reference: list[str], hypothesis: list[str]) -> float:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1] / max(len(reference), 1)


def whisper_variants(minutes: float, names: list[str], voice_kind: str) -> dict[str, Any]:
    """The stt stage's engine call alone, with the service's Whisper settings and cheaper ones (same model,
    same file, VAD on), with word error rate against the script the voice was made from."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from service.engines.offline.whisper import default_model_dir

    voice = make_real_voice(minutes * 60.0) if voice_kind == "real" else inputs.make_voice(minutes * 60.0)
    reference = _words(" ".join(text for _, _, text in voice.lines))
    out: dict[str, Any] = {}
    for name in names:
        model_kwargs, call_kwargs = WHISPER_VARIANTS[name]
        model = WhisperModel(default_model_dir(), device="cpu", compute_type="int8", local_files_only=True,
                             **model_kwargs)
        options = {"language": "en", "task": "transcribe", "beam_size": 5, "word_timestamps": True,
                   "vad_filter": True, "vad_parameters": {"min_silence_duration_ms": 500},
                   "condition_on_previous_text": False, **call_kwargs}
        started = time.perf_counter()
        if "batch_size" in options:
            del options["condition_on_previous_text"]  # the batched pipeline never conditions on it
            segments, _ = BatchedInferencePipeline(model).transcribe(str(voice.path), **options)
        else:
            segments, _ = model.transcribe(str(voice.path), **options)
        text = " ".join(s.text for s in segments)
        seconds = time.perf_counter() - started
        out[name] = {"seconds": round(seconds, 1), "rtf": round(minutes * 60.0 / seconds, 1),
                     "wer": round(_wer(reference, _words(text)), 4)}
        print(f"  whisper {name:36}: {seconds:6.1f} s ({minutes * 60.0 / seconds:5.1f}x real time), "
              f"WER {100 * out[name]['wer']:.1f} %")
        del model
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1-minute input instead of 10 minutes")
    parser.add_argument("--voice", choices=("real", "synthetic"), default="real",
                        help="real read speech (default) or espeak-ng sentences")
    parser.add_argument("--minutes", type=float, default=None, help="input length (default 10, or 1 with --quick)")
    parser.add_argument("--whisper-variants", choices=("none", "some", "all"), default=None,
                        help="after the jobs, time the stt engine call alone: the service's Whisper settings and "
                             "cheaper ones (some: beam 1 and batched, the default of a full run, ~1 min on 10 "
                             "minutes), all five, or none (the default with --quick)")
    parser.add_argument("--source", default="en", choices=("en", "es", "fr", "it", "ru"),
                        help="language of the real voice (default en); other than en: Asterisk prompts read in it, "
                             "sent as source_language auto, results in pipeline_rtf_<lang>.json")
    parser.add_argument("--mixed-only", action="store_true",
                        help="only the mixed-input row (a media job: the voice and the bed as one soundtrack)")
    parser.add_argument("--max-languages", type=int, default=3,
                        help="measure 1..N target languages (default 3: one, two and three languages)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each job, wait up to this many seconds for other processes to leave the CPUs idle")
    parser.add_argument("--offline-voices", default="",
                        help="comma-separated offline voices to run each job with: natural (Kokoro), fast (espeak-ng)")
    args = parser.parse_args()
    if args.quiet_wait is None:  # the machine is shared: wait a while for it before a full run
        args.quiet_wait = 0.0 if args.quick else 30.0
    args.whisper_variants = args.whisper_variants or ("none" if args.quick else "some")
    if args.source != "en":
        args.voice = "real"
        args.whisper_variants = "none"  # the variants time tiny.en on English
    args.minutes = args.minutes or (1.0 if args.quick else 10.0)
    from service.logs import configure

    configure("console", "warning")
    started = time.perf_counter()
    results = {"benchmark": "pipeline_rtf", "quick": args.quick, "environment": machine.environment(),
               **asyncio.run(measure(args))}
    summarise(results)
    if args.whisper_variants != "none":
        names = list(WHISPER_VARIANTS)
        names = names if args.whisper_variants == "all" else [names[0], names[2], names[4]]
        print("\nWhisper alone on the same voice file (the stt stage's engine call, outside the service):")
        results["whisper_variants"] = whisper_variants(args.minutes, names, args.voice)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    name = "pipeline_rtf" if args.source == "en" else f"pipeline_rtf_{args.source}"
    write_results(f"{name}_voices" if args.offline_voices else name, results,
                  quick=args.quick)


if __name__ == "__main__":
    main()
