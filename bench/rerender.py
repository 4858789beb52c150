"""Editing a finished dub (issue 22): what re-rendering one edited line, and adding a language later, cost.

The service runs in this process (`tests.support.running_service`, the real pipeline and offline engines on a
2-worker process pool, a scratch database on the local PostgreSQL) with every engine call counted, driven over
HTTP as a client would. Input: N minutes (10; `--quick` 1) of generated English speech with a stereo bed.

1. A one-language dub (en -> es): its wall time, POST to the `done` event.
2. One line's translation edited by hand (a line in the middle), the language rendered again: wall time from
   POST .../render to `done`, as a share of (1) (target <= 25 %); synthesizer calls (target: that line only);
   the voice stem of the new revision against the previous one's, sample for sample outside the edited line's
   window (from 0.1 s before its start to the next line's start).
3. A language added to the finished job (ca): wall time from POST .../languages to `done` and the recogniser
   calls it made (target 0), against that language's own stages (queued to complete) in a job that dubbed
   en -> es, ca from the start (target: no longer).

    .venv/bin/python bench/rerender.py            # 10-minute input
    .venv/bin/python bench/rerender.py --quick    # 1-minute input
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import tempfile
import time
from collections import Counter
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import soundfile
from _lib import ADMIN_URL, inputs, machine
from _lib.results import write_results

from service.engines.protocols import Engines
from service.engines.selection import offline_engines
from service.settings import Settings
from tests.support import Service, make_settings, read_events, running_service, scratch_database

RENDER_TARGET = 0.25
USER = "bench"
EDITED_TEXT = "Esta frase la ha corregido una persona a mano."


def counting(calls: Counter[str]) -> Any:
    """The offline engines with every call counted."""
    def factory(executor: Executor) -> Engines:
        engines = offline_engines(executor, None)
        transcribe, synthesize = engines.transcriber.transcribe, engines.synthesizer.synthesize

        async def counted_transcribe(*args: Any, **kwargs: Any) -> Any:
            calls["stt"] += 1
            return await transcribe(*args, **kwargs)

        async def counted_synthesize(text: str, *args: Any, **kwargs: Any) -> Any:
            calls["tts"] += 1
            calls[f"tts:{text}"] += 1
            return await synthesize(text, *args, **kwargs)

        engines.transcriber.transcribe = counted_transcribe  # type: ignore[method-assign]
        engines.synthesizer.synthesize = counted_synthesize  # type: ignore[method-assign]
        return engines
    return factory


async def until_done(svc: Service, job_id: str, after: int = 0) -> float:
    """Follow the job's progress stream from `after` to its `done`; the moment it came."""
    async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth(USER),
                                 params={"last_event_id": str(after)}, timeout=None) as stream:
        events = await read_events(stream)
    if not events or events[-1].event != "done" or events[-1].data.get("status") != "complete":
        raise RuntimeError(f"job {job_id} did not complete: {events[-1:] if events else 'no events'}")
    return time.time()


async def new_job(svc: Service, objects: dict[str, str], targets: list[str]) -> tuple[str, float]:
    started = time.time()
    created = await svc.client.post("/v1/jobs", headers=svc.auth(USER), json={
        "voice_object": objects["voice"], "background_object": objects["background"], "source_language": "en",
        "target_languages": targets})
    created.raise_for_status()
    job_id = created.json()["id"]
    return job_id, await until_done(svc, job_id) - started


async def stem(svc: Service, job_id: str, revision: int) -> np.ndarray:
    listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth(USER),
                                   params={"revision": str(revision)})).json()["artifacts"]
    [found] = [a for a in listed if a["kind"] == "voice_stem" and a["target_language"] == "es"]
    body = (await svc.client.get(found["download_url"], timeout=120)).content
    audio, _ = soundfile.read(io.BytesIO(body), dtype="int32", always_2d=True)
    return np.asarray(audio)


async def own_stages(pool: asyncpg.Pool, job_id: str, language: str) -> dict[str, float]:
    """A language's own stages in a job (queued to complete), each in seconds."""
    timing = await inputs.stage_times(pool, job_id)
    return {stage: s for stage, s in timing["tasks"][language]["stages"].items() if stage != "queued"}


async def render_stages(pool: asyncpg.Pool, job_id: str, after: int, language: str) -> dict[str, float]:
    """Seconds in each stage of the render that began after event `after`."""
    rows = [r for r in (await inputs.stage_times(pool, job_id))["rows"]
            if r["seq"] > after and r["kind"] == "stage" and r["target_language"] == language]
    return {a["stage"]: round((b["created_at"] - a["created_at"]).total_seconds(), 3)
            for a, b in itertools.pairwise(rows)}


async def measure(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    seconds = args.minutes * 60.0
    voice = inputs.make_voice(seconds)
    background = inputs.make_background(seconds)
    calls: Counter[str] = Counter()
    results: dict[str, Any] = {"input": {"seconds": seconds, "lines": len(voice.lines),
                                         "voice": "espeak-ng en-us sentences, mono 48 kHz",
                                         "background": "stereo 48 kHz"},
                               "server": "the app in this process (running_service), CPU_WORKERS=2, offline engines"}
    async with running_service(settings, pipeline=True, engines=counting(calls)) as svc:
        headers = svc.auth(USER)
        await inputs.warm_up(svc.client, headers, settings.data_dir / "warmup", "es")
        objects = await inputs.upload_files(svc.client, headers, {"voice": voice.path, "background": background})

        # 1. The one-language dub.
        await machine.wait_for_quiet(args.quiet_wait, threshold=0.15)
        tts_before = calls["tts"]
        job_id, first_wall = await new_job(svc, objects, ["es"])
        first_tts = calls["tts"] - tts_before
        first_stages = dict((await inputs.stage_times(svc.pool, job_id))["tasks"]["es"]["stages"])
        print(f"one-language dub (en -> es) of {seconds:.0f} s: {first_wall:.1f} s, {first_tts} synthesizer calls")

        # 2. One line's translation edited, the language rendered again.
        segments = (await svc.client.get(f"/v1/jobs/{job_id}/transcript", headers=headers)).json()["segments"]
        middle = len(segments) // 2
        line, following = segments[middle], segments[middle + 1]
        edited = await svc.client.patch(f"/v1/jobs/{job_id}/languages/es/segments/{line['id']}", headers=headers,
                                        json={"text": EDITED_TEXT})
        edited.raise_for_status()
        revision = edited.json()["revision"]
        await machine.wait_for_quiet(args.quiet_wait, threshold=0.15)
        tts_before, stt_before = calls["tts"], calls["stt"]
        started = time.time()
        render = await svc.client.post(f"/v1/jobs/{job_id}/languages/es/render", headers=headers)
        render.raise_for_status()
        render_wall = await until_done(svc, job_id, render.json()["after_event"]) - started
        render_tts = calls["tts"] - tts_before
        stages = await render_stages(svc.pool, job_id, render.json()["after_event"], "es")
        other_lines = render_tts - calls[f"tts:{EDITED_TEXT}"]
        old, new = await stem(svc, job_id, 1), await stem(svc, job_id, revision)
        rate = settings.sample_rate
        window = (max(int((line["start"] - 0.1) * rate), 0), int(following["start"] * rate))
        outside_same = bool(old.shape == new.shape and np.array_equal(old[:window[0]], new[:window[0]])
                            and np.array_equal(old[window[1]:], new[window[1]:]))
        differing = int(np.count_nonzero((old != new).any(axis=1))) if old.shape == new.shape else -1
        results["rerender"] = {
            "first_job_wall_seconds": round(first_wall, 2), "first_job_synthesizer_calls": first_tts,
            "segments": len(segments), "edited_segment": line["id"],
            "edited_window_seconds": [round(window[0] / rate, 3), round(window[1] / rate, 3)],
            "render_wall_seconds": round(render_wall, 2), "render_stage_seconds": stages,
            "first_job_stage_seconds": first_stages,
            "render_share_of_first_job": round(render_wall / first_wall, 4),
            "target_share": RENDER_TARGET, "render_synthesizer_calls": render_tts,
            "synthesizer_calls_for_other_lines": other_lines, "render_stt_calls": calls["stt"] - stt_before,
            "voice_stem_outside_window_sample_identical": outside_same, "samples_differing": differing,
            "samples_total": int(old.shape[0]),
        }
        print(f"edited one line ({line['id']} of {len(segments)}) and rendered again: {render_wall:.1f} s = "
              f"{render_wall / first_wall:.1%} of the first job (target <= {RENDER_TARGET:.0%}); synthesizer calls "
              f"{render_tts} ({other_lines} for other lines); voice stem outside "
              f"{window[0] / rate:.2f}-{window[1] / rate:.2f} s sample-identical: {outside_same} "
              f"({differing} of {old.shape[0]} samples differ)\n  render stages: {stages}")

        # 3. A language added to the finished job, against its own stages in a job that had it from the start.
        await machine.wait_for_quiet(args.quiet_wait, threshold=0.15)
        stt_before = calls["stt"]
        started = time.time()
        added = await svc.client.post(f"/v1/jobs/{job_id}/languages", headers=headers,
                                      json={"target_languages": ["ca"]})
        added.raise_for_status()
        add_wall = await until_done(svc, job_id, added.json()["after_event"]) - started
        add_stt = calls["stt"] - stt_before
        await machine.wait_for_quiet(args.quiet_wait, threshold=0.15)
        both_id, both_wall = await new_job(svc, objects, ["es", "ca"])
        ca_stages = await own_stages(svc.pool, both_id, "ca")
        ca_own = sum(ca_stages.values())
        results["add_language"] = {
            "language": "ca", "wall_seconds": round(add_wall, 2), "stt_calls": add_stt,
            "own_stages_in_a_two_language_job_seconds": round(ca_own, 2), "own_stage_seconds": ca_stages,
            "own_stages_without_stt_seconds": round(ca_own - ca_stages.get("stt", 0.0), 2),
            "two_language_job_wall_seconds": round(both_wall, 2), "share": round(add_wall / ca_own, 4),
        }
        print(f"added ca to the finished job: {add_wall:.1f} s with {add_stt} speech-recognition calls; ca's own "
              f"stages in an en -> es, ca job took {ca_own:.1f} s ({add_wall / ca_own:.0%}; "
              f"{ca_own - ca_stages.get('stt', 0.0):.1f} s of them after the shared transcript)")
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with scratch_database(ADMIN_URL, "bench_rerender") as url:
        with tempfile.TemporaryDirectory(prefix="bench-rerender-") as tmp:
            settings = make_settings(Path(tmp), url).with_overrides(  # the service's own lease and polling
                cpu_workers=2, lease_seconds=Settings.lease_seconds,
                poll_interval_seconds=Settings.poll_interval_seconds)
            return await measure(args, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1-minute input")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each measured step, wait up to this many seconds for idle CPUs")
    args = parser.parse_args()
    args.minutes = args.minutes or (1.0 if args.quick else 10.0)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 20.0)
    from service.logs import configure

    configure("console", "warning")
    started = time.perf_counter()
    results = {"benchmark": "rerender", "quick": args.quick, "environment": machine.environment(),
               **asyncio.run(run(args))}
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    write_results("rerender", results, quick=args.quick)


if __name__ == "__main__":
    main()
