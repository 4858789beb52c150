"""Recovery and admission under faults, on the real `dubbing serve` process.

1. kill -9 in the dubbing stage, then restart: seconds from the restarted process being ready to the task's
   next progress event (target < 5 s), and the work redone: units whose clip was finished before the kill
   and spoken again (target 0), units in flight at the kill (at most PARALLEL_UNITS), and those units'
   synthesis seconds (target: less than one unit's).
2. `POST /v1/jobs` latency while two jobs run (target p99 < 250 ms): 20 concurrent creations, several rounds,
   against a server whose pipeline is busy with two long jobs; the same against an idle server, side by side.

    .venv/bin/python bench/recovery.py            # ~60-second inputs
    .venv/bin/python bench/recovery.py --quick    # ~25-second inputs, fewer rounds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _lib  # noqa: F401  (puts the repository root on sys.path)
import asyncpg
import httpx
from _lib import ADMIN_URL, machine, results, servers
from _lib.inputs import make_background, make_voice

from service.client import upload
from tests.support import scratch_database

USER = "bench"


async def _job(client: httpx.AsyncClient, voice: Path, background: Path | None, targets: list[str]) -> str:
    files = {"voice": (voice.name, voice.read_bytes(), "audio/wav")}
    if background is not None:
        files["background"] = (background.name, background.read_bytes(), "audio/wav")
    objects = await upload(client, servers.auth(USER), files)
    body: dict[str, Any] = {"voice_object": objects["voice"], "source_language": "en", "target_languages": targets}
    if "background" in objects:
        body["background_object"] = objects["background"]
    created = await client.post("/v1/jobs", headers=servers.auth(USER), json=body)
    created.raise_for_status()
    return str(created.json()["id"])


async def _wait(conn: asyncpg.Connection, job_id: str, condition: str, timeout: float = 600) -> asyncpg.Record:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await conn.fetchrow(f"SELECT * FROM language_tasks WHERE job_id = $1 AND ({condition})", job_id)
        if row is not None:
            return row
        await asyncio.sleep(0.02)
    raise TimeoutError(condition)


async def kill_and_restart(database_url: str, folder: Path, voice: Path) -> dict[str, Any]:
    data = folder / "data"
    conn = await asyncpg.connect(database_url)
    try:
        async with servers.serving("dubbing", database_url, data) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                job_id = await _job(client, voice, None, ["es"])
            await _wait(conn, job_id, "stage = 'dubbing' AND progress >= (2 + 0.5) / 5")
            os.kill(server.pid, signal.SIGKILL)
            server.proc.wait()
            killed_at_seq = await conn.fetchval("SELECT max(seq) FROM task_events WHERE job_id = $1", job_id)
        clips = data / "scratch" / job_id / "es" / "clips"
        finished = {p.stem: json.loads(p.read_text()) for p in clips.glob("*.json") if not p.name.endswith(".fit.json")}
        started_wavs = {p.stem for p in clips.glob("*.wav") if ".fit" not in p.name}
        in_flight = sorted(started_wavs - set(finished))
        mtimes = {stem: (clips / f"{stem}.wav").stat().st_mtime_ns for stem in finished}
        restart = time.monotonic()
        async with servers.serving("dubbing", database_url, data) as server:
            ready = time.monotonic()
            resumed_seq = await _wait_event(conn, job_id, killed_at_seq)
            resumed = time.monotonic()
            done = await _wait(conn, job_id, "stage IN ('complete', 'failed')")
            respoken = [stem for stem, mtime in mtimes.items()
                        if (clips / f"{stem}.wav").exists() and (clips / f"{stem}.wav").stat().st_mtime_ns != mtime]
        seconds = [c["duration"] for c in finished.values()]
        per_unit = statistics.mean(seconds) if seconds else 0.0
        return {
            "job_id": job_id, "outcome": done["stage"], "attempts": done["attempts"], "claims": done["claims"],
            "restart_to_ready_seconds": round(ready - restart, 2),
            "ready_to_resumed_progress_seconds": round(resumed - ready, 2),
            "resumed_at_event": resumed_seq,
            "units_finished_before_kill": len(finished), "finished_units_spoken_again": len(respoken),
            "units_in_flight_at_kill": len(in_flight),
            "mean_unit_seconds_of_speech": round(per_unit, 3),
            "work_redone_units": len(in_flight) + len(respoken),
        }
    finally:
        await conn.close()


async def _wait_event(conn: asyncpg.Connection, job_id: str, after: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seq = await conn.fetchval("SELECT max(seq) FROM task_events WHERE job_id = $1", job_id)
        if seq is not None and seq > after:
            return int(seq)
        await asyncio.sleep(0.02)
    raise TimeoutError("no progress after the restart")


async def admission(database_url: str, folder: Path, voice: Path, background: Path, small: Path,
                    busy: bool, rounds: int, concurrency: int) -> dict[str, Any]:
    """`POST /v1/jobs` latencies, with two long jobs running (busy) or none."""
    async with servers.serving("dubbing", database_url, folder / ("busy" if busy else "idle"),
                               CPU_WORKERS=str(os.cpu_count() or 2)) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                     limits=httpx.Limits(max_connections=concurrency * 2)) as client:
            if busy:
                for _ in range(2):
                    await _job(client, voice, background, ["es", "ca"])
                await asyncio.sleep(3.0)  # let the stages get going before measuring
            uploads = [await upload(client, servers.auth(USER), {"voice": (small.name, small.read_bytes(),
                                                                            "audio/wav")})
                       for _ in range(rounds * concurrency)]
            timings: list[float] = []
            for r in range(rounds):
                batch = uploads[r * concurrency:(r + 1) * concurrency]

                async def create(objects: dict[str, str]) -> float:
                    started = time.perf_counter()
                    response = await client.post("/v1/jobs", headers=servers.auth(USER), json={
                        "voice_object": objects["voice"], "source_language": "en", "target_languages": ["es"]})
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    return elapsed

                timings += await asyncio.gather(*(create(o) for o in batch))
            listed = (await client.get("/v1/jobs?limit=100", headers=servers.auth(USER))).json()["jobs"]
            for job_id in [j["id"] for j in listed]:  # nobody needs these dubs
                await client.post(f"/v1/jobs/{job_id}/cancel", headers=servers.auth(USER))
    return {"busy": busy, "requests": len(timings), "concurrency": concurrency,
            **results.latency_summary_ms(timings)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 25.0 if args.quick else 60.0
    rounds = 2 if args.quick else 5
    out: dict[str, Any] = {"benchmark": "recovery", "quick": args.quick, "environment": machine.environment(),
                           "input_seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        folder = Path(tmp)
        voice = make_voice(seconds, folder=folder / "voice").path
        background = make_background(seconds, folder=folder / "bed")
        small = make_voice(3.0, seed=3, folder=folder / "small").path
        async with scratch_database(ADMIN_URL, prefix="bench_recovery") as database_url:
            out["kill_and_restart"] = await kill_and_restart(database_url, folder / "kill", voice)
        print("kill -9 in dubbing, restart:", json.dumps(out["kill_and_restart"], indent=1))
        for busy in (False, True):
            async with scratch_database(ADMIN_URL, prefix="bench_recovery") as database_url:
                key = "create_job_busy" if busy else "create_job_idle"
                out[key] = await admission(database_url, folder, voice, background, small, busy, rounds, 20)
                print(f"POST /v1/jobs ({'2 jobs running' if busy else 'idle'}):", json.dumps(out[key]))
    kill = out["kill_and_restart"]
    out["targets"] = {
        "resume_under_5_s": kill["ready_to_resumed_progress_seconds"] < 5.0,
        "finished_units_not_redone": kill["finished_units_spoken_again"] == 0,
        "create_job_p99_under_250_ms_busy": out["create_job_busy"]["p99_ms"] < 250,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = machine.run(lambda: main_async(args))
    print("targets:", out["targets"])
    print("wrote", results.write_results("recovery", out, quick=args.quick))


if __name__ == "__main__":
    main()
