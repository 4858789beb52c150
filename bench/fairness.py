"""Fair shares: how long user B's new job waits for its first task while user A has a queue, fair claim vs the
old oldest-first claim (run side by side as the reference); and the claim's plan and time on 100,000 queued tasks.

Each sample: A has `slots` tasks running and L more queued (one language per job), every task's work takes
`--task-seconds`; B then makes one job, and its wait is from B's creation to its task's `started_at`. With
MAX_TASKS_PER_USER equal to the slots (A may fill them all: the hardest case for B), the fair claim starts B's
task when the first slot frees (<= one task's time); oldest-first starts it after all of A's L queued tasks.

    .venv/bin/python bench/fairness.py              # L in 0, 5, 10, 20, 40; 5 samples each; the plan
    .venv/bin/python bench/fairness.py --quick      # L in 0, 20; 3 samples; the plan on 20,000 tasks
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
from _lib import ADMIN_URL, machine
from _lib.results import median, percentile, write_results

from service.db import connection, jobs, tasks
from service.db.database import Database
from service.db.jobs import InputObject, NewJob
from service.db.listener import Listener
from service.domain import WORK_STAGES
from service.logs import configure as configure_logs
from service.settings import Settings
from service.stages.context import StageContext, StageServices
from service.storage.local import LocalStorage
from service.supervisor.supervisor import Supervisor
from tests.support import JWT_SECRET, scratch_database

SHA = "0" * 64


async def oldest_first_claim(pool: asyncpg.Pool, lease_owner: str, limit: int, lease_seconds: float,
                             per_user: int | None = None) -> list[tasks.ClaimedTask]:
    """The claim before fair shares (main before issue 23): oldest runnable first, across all users."""
    rows = await pool.fetch(
        f"""UPDATE language_tasks AS t SET {tasks.CLAIM_SET_SQL}
            WHERE t.id IN (SELECT id FROM language_tasks WHERE {tasks.RUNNABLE_SQL}
                           ORDER BY run_after LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING {tasks.CLAIMED_SQL}""", lease_owner, lease_seconds, limit)
    return [tasks.ClaimedTask(**dict(r)) for r in rows]


async def make_job(pool: asyncpg.Pool, owner: str) -> uuid.UUID:
    voice = InputObject(f"{owner}/uploads/x/voice.wav", "audio/wav", 100, SHA, 1.0)
    job_id, _ = await jobs.create(pool, NewJob(owner, "en", ["es"], voice, None, None, uuid.uuid4().hex))
    return job_id


@contextlib.asynccontextmanager
async def running_supervisor(url: str, slots: int, task_seconds: float) -> AsyncIterator[Supervisor]:
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), database_url=url, jwt_secret=JWT_SECRET,
                        max_concurrent_tasks=slots, max_tasks_per_user=slots, poll_interval_seconds=1.0,
                        lease_seconds=30.0)

    async def stage(ctx: StageContext) -> None:
        if ctx.stage == "stt":
            await asyncio.sleep(task_seconds)

    pool = await connection.create_pool(url, max_size=6)
    listener = Listener(url)
    await listener.start()
    executor = ThreadPoolExecutor(1)
    services = StageServices(settings, Database.on(pool), listener,
                             LocalStorage(settings.storage_dir, "dubbing", "http://x", JWT_SECRET), executor, None)
    supervisor = Supervisor(services, {name: stage for name in WORK_STAGES})
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.stop()
        await listener.stop()
        await pool.close()
        executor.shutdown(wait=False)


async def one_sample(url: str, queued: int, slots: int, task_seconds: float) -> float:
    """B's wait (seconds) with A's `slots` tasks running and `queued` more waiting."""
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("TRUNCATE jobs CASCADE")
        async with running_supervisor(url, slots, task_seconds) as supervisor:
            for _ in range(slots + queued):
                await make_job(supervisor.pool, "user-a")
            await admin.execute("SELECT pg_notify('tasks_ready', '')")
            while await admin.fetchval("SELECT count(*) FROM language_tasks WHERE started_at IS NOT NULL") < slots:
                await asyncio.sleep(0.005)
            b_job = await make_job(supervisor.pool, "user-b")
            created = await admin.fetchval("SELECT created_at FROM jobs WHERE id = $1", b_job)
            while (started := await admin.fetchval(
                    "SELECT started_at FROM language_tasks WHERE job_id = $1", b_job)) is None:
                await asyncio.sleep(0.005)
            return float((started - created).total_seconds())
    finally:
        await admin.close()


async def waits(url: str, queue_lengths: list[int], samples: int, slots: int, task_seconds: float,
                fair: bool) -> dict[str, Any]:
    original = tasks.claim
    if not fair:
        tasks.claim = oldest_first_claim  # type: ignore[assignment]
    try:
        results: dict[str, Any] = {}
        for queued in queue_lengths:
            measured = sorted([await one_sample(url, queued, slots, task_seconds) for _ in range(samples)])
            results[str(queued)] = {"p50_s": round(percentile(measured, 50), 3),
                                    "p99_s": round(percentile(measured, 99), 3),
                                    "samples": [round(m, 3) for m in measured]}
            print(f"  {'fair' if fair else 'oldest-first':>12}  A queued {queued:>3}: B waits "
                  f"p50 {results[str(queued)]['p50_s']:.3f} s, p99 {results[str(queued)]['p99_s']:.3f} s")
        return results
    finally:
        tasks.claim = original  # type: ignore[assignment]


async def plan_on_many(url: str, count: int, users: int) -> dict[str, Any]:
    """EXPLAIN ANALYZE of one fair claim with `count` queued tasks of `users` users (rolled back), and the
    median time of 20 claims, fair and oldest-first."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE jobs CASCADE")
        await conn.execute(
            """INSERT INTO jobs (id, owner_id, source_language, voice_path, voice_content_type, voice_size_bytes,
                                 voice_sha256, voice_duration_seconds, request_hash, created_at)
               SELECT gen_random_uuid(), 'user-' || (g % $2), 'en', 'user-' || (g % $2) || '/v.wav', 'audio/wav', 1,
                      $3, 1.0, 'h' || g, now() - make_interval(secs => $1 - g)
               FROM generate_series(1, $1) g""", count, users, SHA)
        await conn.execute(
            """INSERT INTO language_tasks (job_id, target_language, run_after, owner_id)
               SELECT id, 'es', created_at, owner_id FROM jobs""")
        await conn.execute("ANALYZE language_tasks")
        await conn.execute("ANALYZE jobs")
        sql = f"""UPDATE language_tasks AS t SET {tasks.CLAIM_SET_SQL}
                  WHERE t.id IN ({tasks.FAIR_CHOICE_SQL}) RETURNING t.id"""
        tx = conn.transaction()
        await tx.start()
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, "bench", 60.0, 8, 4)
        await tx.rollback()
        plan_text = "\n".join(r[0] for r in plan)
        timings: dict[str, float] = {}
        old_sql = f"""UPDATE language_tasks AS t SET {tasks.CLAIM_SET_SQL}
                      WHERE t.id IN (SELECT id FROM language_tasks WHERE {tasks.RUNNABLE_SQL}
                                     ORDER BY run_after LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING t.id"""
        for name, statement, args in (("fair", sql, ("bench", 60.0, 8, 4)), ("oldest_first", old_sql,
                                                                              ("bench", 60.0, 8))):
            spent = []
            for _ in range(20):
                tx = conn.transaction()
                await tx.start()
                started = time.perf_counter()
                await conn.fetch(statement, *args)
                spent.append(time.perf_counter() - started)
                await tx.rollback()
            timings[f"{name}_claim_ms_median"] = round(median(spent) * 1000, 3)
        return {"queued_tasks": count, "users": users, "plan": plan_text,
                "seq_scan_on_language_tasks": "Seq Scan on language_tasks" in plan_text, **timings}
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--task-seconds", type=float, default=0.3)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    configure_logs("console", "warning")
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    queue_lengths = [0, 20] if args.quick else [0, 5, 10, 20, 40]
    samples = 3 if args.quick else args.samples
    async with scratch_database(ADMIN_URL, prefix="fairness") as url:
        print(f"B's wait with A's queue ({args.slots} slots, each task {args.task_seconds} s, "
              f"MAX_TASKS_PER_USER={args.slots}):")
        fair = await waits(url, queue_lengths, samples, args.slots, args.task_seconds, fair=True)
        reference = await waits(url, queue_lengths, samples, args.slots, args.task_seconds, fair=False)
        count = 20_000 if args.quick else 100_000
        plan = await plan_on_many(url, count, users=50)
    print(f"\nfair claim on {count} queued tasks of 50 users: {plan['fair_claim_ms_median']} ms median "
          f"(oldest-first {plan['oldest_first_claim_ms_median']} ms); seq scan: {plan['seq_scan_on_language_tasks']}")
    print(plan["plan"])
    write_results("fairness", {
        "machine": machine.environment(), "slots": args.slots, "task_seconds": args.task_seconds,
        "b_wait_fair": fair, "b_wait_oldest_first": reference, "claim_plan": plan}, quick=args.quick)


if __name__ == "__main__":
    asyncio.run(main())
