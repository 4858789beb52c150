"""Claim throughput: no-op language tasks through our Supervisor vs the same number of no-op pgqueuer jobs.

Our side: N tasks (jobs x languages, created with `jobs.create` before the clock starts), one
Supervisor whose registry maps every work stage to an async no-op; timed from `supervisor.start()`
until no task is left outside `complete` (the database is polled every `--poll` seconds).

A task is not one queue operation: besides its claim, it makes one transition per stage it enters
(stt, translating, dubbing, mixing, exporting, complete = 6), each of which locks the job row, updates
the task, recomputes the job status, appends a `task_events` row and NOTIFYs (how many transitions
share a statement and a commit is the service's business). So we report tasks/s and transitions/s
(= committed stage events/s, counted from `task_events`).

pgqueuer side: its schema installed with `Queries.install()` into a separate database, N jobs
enqueued in one batch, a QueueManager with a no-op entrypoint timed from `run()` until its queue
table is empty (a job leaves it when its completion is logged).

    .venv/bin/python bench/claim_throughput.py            # 2000 tasks: defaults and an operator's setting
    .venv/bin/python bench/claim_throughput.py --quick    # 200 tasks, the same two settings
    .venv/bin/python bench/claim_throughput.py --sweep --repeat 3          # more settings, medians of 3
    .venv/bin/python bench/claim_throughput.py --tasks 10000 --configs 16x16x16,64x32x64x30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from _lib import ADMIN_URL, machine
from _lib.polling import until_none_left
from _lib.results import median, write_results

from service.db import connection, jobs
from service.db.database import Database
from service.db.jobs import InputObject, NewJob
from service.db.listener import Listener
from service.domain import WORK_STAGES
from service.logs import configure as configure_logs
from service.settings import Settings
from service.stages.context import StageContext, StageFn, StageServices
from service.storage.local import LocalStorage
from service.supervisor.supervisor import Supervisor
from tests.support import JWT_SECRET, database_name, fresh_database, scratch_database, with_database

LANGUAGES = ["es", "fr", "de", "it", "pt", "nl", "sv", "pl", "ja", "ko"]
SHA = "0" * 64
DEFAULTS = Settings()


@dataclass(frozen=True)
class OurConfig:
    max_concurrent_tasks: int
    claim_batch_size: int
    stage_concurrency: int = DEFAULTS.stage_concurrency
    pool_size: int = 10  # service.db.connection.create_pool's default, what the app runs with

    @property
    def label(self) -> str:
        return (f"max_concurrent_tasks={self.max_concurrent_tasks} claim_batch_size={self.claim_batch_size} "
                f"stage_concurrency={self.stage_concurrency} pool={self.pool_size}")

    @classmethod
    def parse(cls, text: str) -> OurConfig:
        """`MAXxBATCH[xSTAGE[xPOOL]]`, e.g. `32x16` or `32x16x32x20`."""
        return cls(*(int(p) for p in text.split("x")))


@dataclass(frozen=True)
class PgqConfig:
    batch_size: int
    max_concurrent_tasks: int | None
    pool: bool  # AsyncpgPoolDriver instead of the one-connection AsyncpgDriver `pgq run` uses

    @property
    def label(self) -> str:
        driver = "AsyncpgPoolDriver(10)" if self.pool else "AsyncpgDriver(1 conn)"
        return f"batch_size={self.batch_size} max_concurrent_tasks={self.max_concurrent_tasks} driver={driver}"


async def _noop(_ctx: StageContext) -> None:
    return None


def noop_registry() -> dict[str, StageFn]:
    return dict.fromkeys(WORK_STAGES, _noop)


# -- ours -----------------------------------------------------------------------------------------
async def create_jobs(url: str, n_jobs: int, languages: list[str]) -> None:
    """Insert the jobs and their tasks through `jobs.create`, a few transactions at a time."""
    pool = await connection.create_pool(url, max_size=8)
    try:
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            owner = f"user{i % 50}"
            voice = InputObject(f"{owner}/uploads/{i}/voice.wav", "audio/wav", 100, SHA, 1.0)
            async with gate:
                await jobs.create(pool, NewJob(owner, "en", languages, voice, None, None, uuid.uuid4().hex))

        await asyncio.gather(*(one(i) for i in range(n_jobs)))
    finally:
        await pool.close()


async def run_ours(template: str, n_tasks: int, languages: list[str], config: OurConfig,
                   poll: float, timeout: float) -> dict[str, Any]:
    n_jobs = n_tasks // len(languages)
    async with fresh_database(ADMIN_URL, template) as url:
        await create_jobs(url, n_jobs, languages)
        with tempfile.TemporaryDirectory(prefix="bench-claim-") as tmp:
            settings = Settings(
                data_dir=Path(tmp), database_url=url, jwt_secret=JWT_SECRET,
                max_concurrent_tasks=config.max_concurrent_tasks, claim_batch_size=config.claim_batch_size,
                stage_concurrency=config.stage_concurrency,
            )
            db = await Database.open(url, max_size=config.pool_size)
            listener = Listener(url)
            watcher = await asyncpg.connect(url)
            executor = ThreadPoolExecutor(1)
            supervisor: Supervisor | None = None
            try:
                await listener.start()
                storage = LocalStorage(settings.storage_dir, settings.storage_bucket, "http://x", settings.jwt_secret)
                supervisor = Supervisor(StageServices(settings, db, listener, storage, executor, None), noop_registry())
                cpu_before = time.process_time()
                started = time.monotonic()
                await supervisor.start()
                ended = await until_none_left(
                    watcher, "SELECT count(*) FROM language_tasks WHERE stage <> 'complete'", timeout, poll)
                cpu = time.process_time() - cpu_before
            finally:
                if supervisor is not None:
                    await supervisor.stop()
                await listener.stop()
                await db.close()
                executor.shutdown()
            try:
                transitions = await watcher.fetchval(
                    "SELECT count(*) FROM task_events WHERE kind = 'stage' AND stage <> 'queued'")
                not_done = await watcher.fetchval("SELECT count(*) FROM jobs WHERE status <> 'complete'")
                attempts = await watcher.fetchval("SELECT max(attempts) FROM language_tasks")
            finally:
                await watcher.close()
    if not_done or attempts != 1:
        raise RuntimeError(f"run was not clean: {not_done} jobs not complete, max attempts {attempts}")
    elapsed = ended - started
    return {
        "config": asdict(config),
        "label": config.label,
        "tasks": n_jobs * len(languages),
        "jobs": n_jobs,
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(n_jobs * len(languages) / elapsed, 1),
        "transitions": transitions,
        "transitions_per_s": round(transitions / elapsed, 1),
        "bench_process_cpu_s": round(cpu, 2),
    }


# -- pgqueuer -------------------------------------------------------------------------------------
async def run_pgqueuer(n_jobs: int, config: PgqConfig, poll: float, timeout: float) -> dict[str, Any]:
    from pgqueuer import QueueManager
    from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver, AsyncpgPoolDriver
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    async with fresh_database(ADMIN_URL, "template1") as url:  # an empty database: pgqueuer installs its own
        setup = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(setup))
            await queries.install()
            await queries.enqueue(["noop"] * n_jobs, [None] * n_jobs, [0] * n_jobs)
        finally:
            await setup.close()

        pool: asyncpg.Pool | None = None
        conn: asyncpg.Connection | None = None
        if config.pool:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
            driver: Any = AsyncpgPoolDriver(pool)
        else:
            conn = await asyncpg.connect(url)
            driver = AsyncpgDriver(conn)
        watcher = await asyncpg.connect(url)
        manager = QueueManager(Queries(driver))

        @manager.entrypoint("noop")
        async def noop(_job: Job) -> None:
            return None

        runner: asyncio.Task[None] | None = None
        try:
            cpu_before = time.process_time()
            started = time.monotonic()
            runner = asyncio.create_task(manager.run(
                batch_size=config.batch_size, max_concurrent_tasks=config.max_concurrent_tasks,
                dequeue_timeout=timedelta(seconds=5)))
            waiting = asyncio.create_task(until_none_left(watcher, "SELECT count(*) FROM pgqueuer", timeout, poll))
            done, _ = await asyncio.wait({runner, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                runner.result()
                raise RuntimeError("pgqueuer's QueueManager stopped before the queue was empty")
            ended = waiting.result()
            cpu = time.process_time() - cpu_before
            logged = await watcher.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
        finally:
            manager.shutdown.set()
            if runner is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(runner, 15)
            await watcher.close()
            if pool is not None:
                await pool.close()
            if conn is not None:
                await conn.close()
    if logged != n_jobs:
        raise RuntimeError(f"pgqueuer logged {logged} successful jobs of {n_jobs}")
    elapsed = ended - started
    return {
        "config": asdict(config),
        "label": config.label,
        "jobs": n_jobs,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(n_jobs / elapsed, 1),
        "bench_process_cpu_s": round(cpu, 2),
    }


# -- main -----------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds: 200 tasks, defaults + one setting")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks (jobs x languages) and pgqueuer jobs")
    parser.add_argument("--languages", type=int, default=5, help="languages per job")
    parser.add_argument("--sweep", action="store_true", help="also try more of our settings (adds ~1 min)")
    parser.add_argument("--configs", default="", help="our settings to try instead, comma-separated "
                        "MAXxBATCH[xSTAGE[xPOOL]] (the service defaults are always run first)")
    parser.add_argument("--repeat", type=int, default=1, help="run every setting this many times (medians kept)")
    parser.add_argument("--poll", type=float, default=0.1, help="completion poll interval, seconds")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on one run after this, seconds")
    parser.add_argument("--log-level", default="warning", help="structlog level for the supervisor's logs")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before each run, wait up to this many seconds for the (shared) machine to be idle")
    return parser.parse_args()


def our_configs(args: argparse.Namespace) -> list[OurConfig]:
    default = OurConfig(DEFAULTS.max_concurrent_tasks, DEFAULTS.claim_batch_size)
    # What an operator can set from the environment: MAX_CONCURRENT_TASKS and STAGE_CONCURRENCY
    # (claim_batch_size and the pool size are fixed in code).
    operator = OurConfig(32, DEFAULTS.claim_batch_size, 32)
    if args.configs:
        extra = [OurConfig.parse(c) for c in args.configs.split(",") if c]
    elif args.sweep:
        extra = [operator, OurConfig(16, 16, 16), OurConfig(32, 16, 32), OurConfig(64, 32, 64),
                 OurConfig(32, 16, 32, 20), OurConfig(64, 32, 64, 30)]
    else:
        extra = [operator]
    return [default, *[c for c in dict.fromkeys(extra) if c != default]]


async def measure(args: argparse.Namespace, template: str, n_tasks: int, languages: list[str],
                  ours: list[OurConfig], pgq: list[PgqConfig]) -> tuple[list[list[dict[str, Any]]],
                                                                        list[list[dict[str, Any]]]]:
    """Every setting `--repeat` times, pgqueuer interleaved between ours so both see the same machine."""
    our_runs: list[list[dict[str, Any]]] = [[] for _ in ours]
    pgq_runs: list[list[dict[str, Any]]] = [[] for _ in pgq]
    template_url = with_database(ADMIN_URL, template)
    for round_no in range(args.repeat):
        for i, config in enumerate(pgq):
            busy = await machine.wait_for_quiet(args.quiet_wait)
            result = await run_pgqueuer(n_tasks, config, args.poll, args.timeout)
            result.update(round=round_no, machine_busy_before=busy)
            pgq_runs[i].append(result)
            print(f"pgqueuer  {config.label:<78} {result['jobs_per_s']:>8.1f} jobs/s   ({result['seconds']} s)")
        for i, our in enumerate(ours):
            busy = await machine.wait_for_quiet(args.quiet_wait)
            probe = await machine.commit_latency_ms(template_url)
            result = await run_ours(template, n_tasks, languages, our, args.poll, args.timeout)
            result.update(round=round_no, commit_probe_ms=probe, machine_busy_before=busy,
                          load_average=machine.load_average())
            our_runs[i].append(result)
            print(f"ours      {our.label:<78} {result['tasks_per_s']:>8.1f} tasks/s  "
                  f"{result['transitions_per_s']:>7.1f} transitions/s  ({result['seconds']} s, "
                  f"commit {probe} ms, machine {busy:.0%} busy before)")
    return our_runs, pgq_runs


async def main() -> None:
    args = parse_args()
    if args.quick:
        args.tasks = min(args.tasks, 200)
    languages = LANGUAGES[: args.languages]
    n_tasks = args.tasks - args.tasks % len(languages)
    configure_logs("json", args.log_level)
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    ours = our_configs(args)
    pgq = [PgqConfig(10, None, False)] + ([] if args.quick else [PgqConfig(50, None, True)])

    print(f"{n_tasks} tasks ({n_tasks // len(languages)} jobs x {len(languages)} languages) through our "
          f"Supervisor, {n_tasks} jobs through pgqueuer; PostgreSQL at {ADMIN_URL}\n")
    wall = time.monotonic()
    results: dict[str, Any] = {
        "name": "claim_throughput", "mode": "quick" if args.quick else "full",
        "environment": machine.environment(), "postgres": await machine.server_info(),
        "load_average_before": machine.load_average(), "tasks": n_tasks, "languages_per_job": len(languages),
    }
    async with scratch_database(ADMIN_URL, "bench_claim") as template_url:  # each run gets a copy of it
        template = database_name(template_url)
        our_runs, pgq_runs = await measure(args, template, n_tasks, languages, ours, pgq)

    def summarize(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
        return {"label": runs[0]["label"], "config": runs[0]["config"],
                **{k: round(median([r[k] for r in runs]), 1) for k in keys}, "runs": runs}

    results["ours"] = [summarize(r, ("tasks_per_s", "transitions_per_s", "seconds")) for r in our_runs]
    results["pgqueuer"] = [summarize(r, ("jobs_per_s", "seconds")) for r in pgq_runs]
    ours_default, pgq_default = results["ours"][0], results["pgqueuer"][0]
    ours_best = max(results["ours"], key=lambda r: r["tasks_per_s"])
    pgq_best = max(results["pgqueuer"], key=lambda r: r["jobs_per_s"])
    results["summary"] = {
        "ours_default": ours_default["label"],
        "ours_default_tasks_per_s": ours_default["tasks_per_s"],
        "ours_default_transitions_per_s": ours_default["transitions_per_s"],
        "ours_best": ours_best["label"],
        "ours_best_tasks_per_s": ours_best["tasks_per_s"],
        "ours_best_transitions_per_s": ours_best["transitions_per_s"],
        "pgqueuer_default": pgq_default["label"],
        "pgqueuer_default_jobs_per_s": pgq_default["jobs_per_s"],
        "pgqueuer_best": pgq_best["label"],
        "pgqueuer_best_jobs_per_s": pgq_best["jobs_per_s"],
        "ratio_tasks_best_vs_pgqueuer_best": round(ours_best["tasks_per_s"] / pgq_best["jobs_per_s"], 3),
        "ratio_tasks_default_vs_pgqueuer_default": round(ours_default["tasks_per_s"] / pgq_default["jobs_per_s"], 3),
        "ratio_transitions_best_vs_pgqueuer_best": round(ours_best["transitions_per_s"] / pgq_best["jobs_per_s"], 3),
        "target": "ours tasks/s >= 1.0x pgqueuer jobs/s",
        "target_met": ours_best["tasks_per_s"] >= pgq_best["jobs_per_s"],
        "wall_seconds": round(time.monotonic() - wall, 1),
    }
    results["load_average_after"] = machine.load_average()
    results["notes"] = (
        "tasks/s counts language tasks taken from queued to complete. A task is one claim plus one transition per "
        "stage it enters (stt, translating, dubbing, mixing, exporting, complete = 6); each transition locks the "
        "job row, updates the task, recomputes the job status, appends a task_events row and NOTIFYs (how many "
        "share a statement and a commit is up to the service); transitions/s counts those committed stage events. "
        "A pgqueuer job is one dequeue and one completion log, both batched. Both run in this process (uvloop) on "
        "the same PostgreSQL server, pgqueuer interleaved with ours; each time runs from start to the poll that "
        "saw nothing left "
        f"(every {args.poll} s). commit_probe_ms is the median one-row INSERT commit measured just before each of "
        "our runs: the machine is shared, and fsync time and CPU steal move these figures by up to 2x."
    )
    s = results["summary"]
    print(f"\nours: defaults {s['ours_default_tasks_per_s']} tasks/s ({s['ours_default_transitions_per_s']} "
          f"transitions/s); best {s['ours_best_tasks_per_s']} tasks/s ({s['ours_best_transitions_per_s']} "
          f"transitions/s) with {s['ours_best']}")
    print(f"pgqueuer: defaults {s['pgqueuer_default_jobs_per_s']} jobs/s; best {s['pgqueuer_best_jobs_per_s']} "
          f"jobs/s with {s['pgqueuer_best']}")
    print(f"ours/pgqueuer: tasks best/best {s['ratio_tasks_best_vs_pgqueuer_best']}x, defaults/defaults "
          f"{s['ratio_tasks_default_vs_pgqueuer_default']}x, transitions/jobs best/best "
          f"{s['ratio_transitions_best_vs_pgqueuer_best']}x (target 1.0x tasks: "
          f"{'met' if s['target_met'] else 'NOT met'}); {s['wall_seconds']} s in all")
    write_results("claim_throughput", results, quick=args.quick)


if __name__ == "__main__":
    machine.run(main)
