"""Scale-out: throughput with 1, 2 and 4 worker processes for each QUEUE_BACKEND, the Dramatiq path's per-task
overhead against the in-process supervisor, and what N machines would run into first.

1. No-op tasks. Worker processes (`--role worker`, every stage a no-op: bench/_lib/serve_app.py noop) are
   started and ready first; then jobs are created as `POST /v1/jobs` creates them (`jobs.create`, then for
   dramatiq the Dispatcher sends their messages) and the clock runs until no task is left outside `complete`.
2. Per-task latency: one worker, one task at a time (created, then waited for): `finished_at - created_at`
   of each task, from PostgreSQL's own clock. The difference of the medians is the Dramatiq path's overhead.
3. Short real jobs: an API process (`dubbing serve --role api`) and 1, 2, 4 `dubbing serve --role worker`
   processes (one CPU worker each, real offline engines), M jobs of a 20-second voice, one language, all
   submitted at once through the API; jobs/min until the last `done`.
4. Capacities on this machine: PostgreSQL committed transitions/s (from part 1), Redis enqueue+fetch+ack
   cycles/s through the broker, the disk's write rate; and from them, per resource, how many machines like
   this one it would take to saturate it (the arithmetic is printed and saved).

    .venv/bin/python bench/scale_out.py            # full run (about ten minutes on this 2-core machine)
    .venv/bin/python bench/scale_out.py --quick    # smoke run: fewer tasks and jobs, 1 and 2 workers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
from _lib import ADMIN_URL, machine
from _lib.inputs import make_background, make_voice, run_job, upload_files
from _lib.polling import until_none_left
from _lib.results import median, write_results
from _lib.servers import auth, serving

from service.db import connection, jobs
from service.db.database import Database
from service.db.jobs import InputObject, NewJob
from service.queue.redis_queue import RedisQueue
from service.settings import Settings
from service.wiring.backends import open_dispatch
from tests.support import scratch_database
from tests.support.redis import clear_namespace, new_namespace, redis_url

BACKENDS = ("postgres", "dramatiq")
SHA = "0" * 64


def queue_env(backend: str, namespace: str) -> dict[str, str]:
    return {"QUEUE_BACKEND": backend, "REDIS_URL": redis_url(), "REDIS_NAMESPACE": namespace}


def queue_settings(url: str, backend: str, namespace: str) -> Settings:
    return Settings(database_url=url, queue_backend=backend, redis_url=redis_url(), redis_namespace=namespace)


# -- 1 and 2: no-op tasks --------------------------------------------------------------------------------
async def noop_run(backend: str, workers: int, n_jobs: int, languages: list[str], sequential: bool,
                   scratch: Path) -> dict[str, Any]:
    namespace = new_namespace()
    async with scratch_database(ADMIN_URL, "bench_scale") as url, AsyncExitStack() as stack:
        env = {**queue_env(backend, namespace), "LOG_LEVEL": "warning"}
        for i in range(workers):
            await stack.enter_async_context(serving("noop", url, scratch / f"{backend}-{workers}-{i}", role="worker",
                                                    **env))
        pool = await connection.create_pool(url, max_size=8)
        stack.push_async_callback(pool.close)
        dispatch = await stack.enter_async_context(open_dispatch(queue_settings(url, backend, namespace),
                                                                 Database.on(pool)))
        conn = await asyncpg.connect(url)
        stack.push_async_callback(conn.close)
        gate = asyncio.Semaphore(8)

        async def create(i: int) -> uuid.UUID:
            voice = InputObject(f"user{i % 50}/uploads/{i}/voice.wav", "audio/wav", 100, SHA, 1.0)
            async with gate:
                job_id, _ = await jobs.create(pool, NewJob(f"user{i % 50}", "en", languages, voice, None, None,
                                                           uuid.uuid4().hex))
                await dispatch.job_created(job_id)
            return job_id

        left = "SELECT count(*) FROM language_tasks WHERE stage <> 'complete'"
        started = time.monotonic()
        if sequential:
            for i in range(n_jobs):
                job_id = await create(i)
                await until_none_left(conn, f"SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status <> 'complete'",
                                      60, poll=0.002)
            finished = time.monotonic()
        else:
            await asyncio.gather(*(create(i) for i in range(n_jobs)))
            finished = await until_none_left(conn, left, 600)
        seconds = finished - started
        tasks = n_jobs * len(languages)
        latencies = [r["s"] for r in await conn.fetch(
            "SELECT extract(epoch FROM finished_at - created_at)::float8 AS s FROM language_tasks")]
        transitions = await conn.fetchval("SELECT count(*) FROM task_events WHERE kind = 'stage' AND stage <> 'queued'")
    with contextlib.suppress(Exception):
        clear_namespace(redis_url(), namespace)
    return {"backend": backend, "workers": workers, "tasks": tasks, "seconds": round(seconds, 3),
            "tasks_per_s": round(tasks / seconds, 1), "transitions_per_s": round(transitions / seconds, 1),
            "latency_ms_p50": round(median(latencies) * 1000, 2),
            "latency_ms_p90": round(sorted(latencies)[int(0.9 * (len(latencies) - 1))] * 1000, 2)}


# -- 3: short real jobs ------------------------------------------------------------------------------------
async def real_run(backend: str, workers: int, n_jobs: int, voice: Path, background: Path,
                   scratch: Path) -> dict[str, Any]:
    namespace = new_namespace()
    data_dir = scratch / f"real-{backend}-{workers}"  # one DATA_DIR for all: the shared disk
    async with scratch_database(ADMIN_URL, "bench_scale") as url, AsyncExitStack() as stack:
        env = {**queue_env(backend, namespace), "CPU_WORKERS": "1", "LOG_LEVEL": "warning"}
        api = await stack.enter_async_context(serving("dubbing", url, data_dir, role="api", **env))
        for _ in range(workers):
            await stack.enter_async_context(serving("dubbing", url, data_dir, role="worker", **env))
        import httpx

        client = await stack.enter_async_context(httpx.AsyncClient(base_url=api.base_url, timeout=60))
        headers = auth("bench")
        objects = await upload_files(client, headers, {"voice": voice, "background": background})
        body = {"voice_object": objects["voice"], "background_object": objects["background"],
                "source_language": "en", "target_languages": ["es"]}
        # Let the workers load Whisper into their CPU workers first (start-up does it in the background).
        await asyncio.sleep(3)
        started = time.time()
        runs = await asyncio.gather(*(run_job(client, headers, {**body, "idempotency_key": uuid.uuid4().hex})
                                      for _ in range(n_jobs)))
        seconds = max(r.done_at for r in runs) - started
        conn = await asyncpg.connect(url)
        try:
            events_per_job = await conn.fetchval("SELECT count(*)::float8 / count(DISTINCT job_id) FROM task_events")
            artifact_bytes = await conn.fetchval(
                "SELECT sum(size_bytes)::float8 / count(DISTINCT job_id) FROM artifacts")
        finally:
            await conn.close()
    with contextlib.suppress(Exception):
        clear_namespace(redis_url(), namespace)
    statuses = sorted({r.status for r in runs})
    return {"backend": backend, "workers": workers, "jobs": n_jobs, "statuses": statuses,
            "seconds": round(seconds, 2), "jobs_per_min": round(n_jobs / seconds * 60, 2),
            "job_seconds_p50": round(median([r.wall_seconds for r in runs]), 2),
            "events_per_job": round(events_per_job, 1), "artifact_mib_per_job": round(artifact_bytes / 2**20, 2),
            "input_mib_per_job": round((voice.stat().st_size + background.stat().st_size) / 2**20, 2)}


# -- 4: capacities -----------------------------------------------------------------------------------------
async def redis_cycles(n: int, clients: int = 8) -> float:
    """enqueue + fetch + ack through Dramatiq's broker as the API and workers do them, `clients` at once (each its
    own connection and threads); a lower bound of the server's rate, since this one Python process is the limit."""
    namespace = new_namespace()
    queues = [RedisQueue(redis_url(), namespace) for _ in range(clients)]

    async def one(queue: RedisQueue, count: int) -> None:
        ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(count)]
        for i in range(0, count, 10):
            await queue.send(ids[i:i + 10])
        for _ in range(count):
            delivery = await queue.receive()
            if delivery is not None:
                await queue.ack(delivery)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(queue, n // clients) for queue in queues))
        return n // clients * clients / (time.perf_counter() - started)
    finally:
        for queue in queues:
            queue.close()
        clear_namespace(redis_url(), namespace)


def claim_benchmark_transitions() -> float:
    """bench/claim_throughput.py's best committed transitions/s on this machine, if it was run."""
    path = Path(__file__).parent / "results" / "claim_throughput.json"
    with contextlib.suppress(OSError, KeyError, ValueError):
        return float(json.loads(path.read_text())["summary"]["ours_best_transitions_per_s"])
    return 0.0


def disk_write_mib_s(folder: Path, mib: int = 256) -> float:
    block = os.urandom(1 << 20)
    path = folder / "disk-probe.bin"
    started = time.perf_counter()
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return mib / seconds


def machines_model(noop: list[dict[str, Any]], real: list[dict[str, Any]], redis_per_s: float,
                   disk_mib_s: float, poll_interval: float) -> dict[str, Any]:
    """How many 2-core machines like this one (each running its best measured real-job rate) saturate each
    shared resource. Per job (one language): PostgreSQL commits ~ its events (each a transition or a progress
    event), the claim and the dispatch mark, plus each worker's sweep (a few reads every POLL_INTERVAL_SECONDS,
    counted as one commit); Redis ~ one enqueue, one fetch and one ack, plus every idle worker's polling (up
    to 10 fetches/s, counted as if idle all the time: the worst case); storage ~ the inputs read and the
    artifacts written."""
    best = max((r for r in real if r["backend"] == "dramatiq"), key=lambda r: r["jobs_per_min"])
    jobs_per_s = best["jobs_per_min"] / 60
    pg_capacity = max([r["transitions_per_s"] for r in noop] + [claim_benchmark_transitions()])
    pg_per_job = best["events_per_job"] + 2 + (1 / poll_interval) / max(jobs_per_s, 1e-9)
    redis_per_job = 3
    redis_idle_per_machine = 10
    storage_mib_per_job = best["artifact_mib_per_job"] + best["input_mib_per_job"]  # written + read
    per_machine = {"jobs_per_s": round(jobs_per_s, 3),
                   "postgres_commits_per_s": round(jobs_per_s * pg_per_job, 2),
                   "redis_ops_per_s": round(jobs_per_s * redis_per_job + redis_idle_per_machine, 2),
                   "storage_mib_per_s": round(jobs_per_s * storage_mib_per_job, 3)}
    limits = {"postgres": pg_capacity / per_machine["postgres_commits_per_s"],
              "redis": redis_per_s / per_machine["redis_ops_per_s"],
              "storage_local_disk": disk_mib_s / per_machine["storage_mib_per_s"]}
    return {"per_machine": per_machine, "per_job": {"postgres_commits": round(pg_per_job, 1),
                                                     "redis_ops": redis_per_job,
                                                     "storage_mib": round(storage_mib_per_job, 2)},
            "capacity_source": "PostgreSQL: the best committed transitions/s seen here or in claim_throughput.json "
                               "(a lower bound: neither saturates the server); Redis: enqueue+fetch+ack cycles/s "
                               "from 8 clients in one Python process (a lower bound); disk: one 256 MiB fsynced write",
            "capacity": {"postgres_transitions_per_s": pg_capacity, "redis_cycles_per_s": round(redis_per_s),
                         "disk_write_mib_per_s": round(disk_mib_s, 1)},
            "machines_to_saturate": {k: int(v) for k, v in limits.items()},
            "first_bottleneck": min(limits, key=lambda k: limits[k])}


# -- main --------------------------------------------------------------------------------------------------
async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    worker_counts = (1, 2) if args.quick else (1, 2, 4)
    n_jobs, languages = (30, ["es", "fr"]) if args.quick else (200, ["es", "fr"])
    seq_jobs = 15 if args.quick else 40
    real_jobs = 2 if args.quick else 8
    wall = time.monotonic()
    results: dict[str, Any] = {"environment": machine.environment(), "load_average_before": machine.load_average()}
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))

    print("1. no-op tasks (throughput) ...", flush=True)
    noop = []
    for workers in worker_counts:
        for backend in BACKENDS:
            run = await noop_run(backend, workers, n_jobs, languages, False, scratch)
            noop.append(run)
            print(f"   {backend:9} {workers} worker(s): {run['tasks_per_s']:7.1f} tasks/s "
                  f"({run['transitions_per_s']} transitions/s), p50 {run['latency_ms_p50']} ms", flush=True)
    print("2. per-task latency, one worker, one task at a time ...", flush=True)
    latency = {}
    for backend in BACKENDS:
        run = await noop_run(backend, 1, seq_jobs, ["es"], True, scratch)
        latency[backend] = run
        print(f"   {backend:9} p50 {run['latency_ms_p50']} ms, p90 {run['latency_ms_p90']} ms", flush=True)
    overhead_ms = round(latency["dramatiq"]["latency_ms_p50"] - latency["postgres"]["latency_ms_p50"], 2)
    print(f"   dramatiq path overhead per task: {overhead_ms:+} ms (p50)")

    print("3. short real jobs (20 s voice, one language) ...", flush=True)
    voice = make_voice(20.0).path
    background = make_background(20.0)
    real = []
    for workers in worker_counts:
        for backend in BACKENDS:
            run = await real_run(backend, workers, real_jobs, voice, background, scratch)
            real.append(run)
            print(f"   {backend:9} {workers} worker(s): {run['jobs_per_min']:6.2f} jobs/min "
                  f"({run['jobs']} jobs in {run['seconds']} s, {run['statuses']})", flush=True)

    print("4. capacities and N machines ...", flush=True)
    redis_per_s = statistics.median([await redis_cycles(2000 if not args.quick else 500) for _ in range(3)])
    disk = disk_write_mib_s(scratch, 64 if args.quick else 256)
    model = machines_model(noop, real, redis_per_s, disk, Settings().poll_interval_seconds)
    print(f"   redis {redis_per_s:.0f} enqueue+fetch+ack/s, disk {disk:.0f} MiB/s; "
          f"machines to saturate: {model['machines_to_saturate']} (first: {model['first_bottleneck']})")

    def ratio(rows: list[dict[str, Any]], key: str, workers: int) -> float:
        by = {r["backend"]: r[key] for r in rows if r["workers"] == workers}
        return round(by["dramatiq"] / by["postgres"], 3)

    results.update(noop_tasks=noop, latency=latency, real_jobs=real, model=model, summary={
        "noop_ratio_dramatiq_vs_postgres": {w: ratio(noop, "tasks_per_s", w) for w in worker_counts},
        "real_ratio_dramatiq_vs_postgres": {w: ratio(real, "jobs_per_min", w) for w in worker_counts},
        "noop_scaling": {b: round(next(r["tasks_per_s"] for r in noop if r["backend"] == b and r["workers"] ==
                                       worker_counts[-1]) /
                                  next(r["tasks_per_s"] for r in noop if r["backend"] == b and r["workers"] == 1), 2)
                         for b in BACKENDS},
        "real_scaling": {b: round(next(r["jobs_per_min"] for r in real if r["backend"] == b and r["workers"] ==
                                       worker_counts[-1]) /
                                  next(r["jobs_per_min"] for r in real if r["backend"] == b and r["workers"] == 1), 2)
                         for b in BACKENDS},
        "dramatiq_overhead_ms_per_task_p50": overhead_ms,
        "wall_seconds": round(time.monotonic() - wall, 1)})
    results["load_average_after"] = machine.load_average()
    s = results["summary"]
    print(f"\ndramatiq/postgres no-op tasks/s by workers: {s['noop_ratio_dramatiq_vs_postgres']}; real jobs/min: "
          f"{s['real_ratio_dramatiq_vs_postgres']}; scaling 1->{worker_counts[-1]} workers: no-op {s['noop_scaling']}, "
          f"real {s['real_scaling']}; overhead {overhead_ms:+} ms/task; {s['wall_seconds']} s in all")
    write_results("scale_out", results, quick=args.quick)


if __name__ == "__main__":
    machine.run(main)
