"""The `ops` views (sql/011) on a large history: does each stay cheap, and does it read through an index?

A scratch database is filled, in SQL, with 30 days of a busy service: 20,000 jobs of 500 users, two languages
each (40,000 tasks: most complete, some failed, cancelled or retried, a couple of hundred still queued, running
or stalled), 25 events per task (1,000,000 `task_events` rows: stage changes carrying the stage's engine and
duration, progress, artifacts, failures), six artifacts per task and three per job (300,000 rows, those past
48 h marked deleted with their inputs), and the uploads behind the jobs plus unused ones. After VACUUM ANALYZE
each view runs under EXPLAIN (ANALYZE, BUFFERS) several times; the median execution time, the buffers and the
indexes and sequential scans of the plan are printed and saved, with the queries `/metrics` makes on every
scrape and the ones `dubbing retention --dry-run` makes.

    .venv/bin/python bench/ops_views.py            # 1,000,000 task_events
    .venv/bin/python bench/ops_views.py --quick    # 50,000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from _lib import ADMIN_URL, machine
from _lib.results import write_results

from service import retention
from service.db import connection, ops
from service.settings import Settings
from tests.support import scratch_database

EVENTS_PER_TASK = 25
LANGUAGES = 2
USERS = 500
DAYS = 30
UNFINISHED_JOBS = 100  # the newest ones: their tasks are queued, running or stalled

VIEWS = ["queue_depth", "running_tasks", "stalled_tasks", "failures_24h", "stage_durations", "throughput_hourly",
         "storage_by_user", "storage_by_kind", "jobs_per_user_day", "retention_runs"]

# -- the fixture -----------------------------------------------------------------------------------------
JOBS_SQL = f"""
INSERT INTO jobs (id, owner_id, status, source_language, voice_path, voice_content_type, voice_size_bytes,
                  voice_sha256, voice_duration_seconds, background_path, background_content_type,
                  background_size_bytes, background_sha256, background_duration_seconds, request_hash,
                  last_event_seq, created_at, updated_at)
SELECT gen_random_uuid(), 'user' || (i % {USERS}), 'queued', 'en',
       'user' || (i % {USERS}) || '/uploads/' || i || '/voice.wav', 'audio/wav', 200000 + (i % 997) * 1000,
       repeat('a', 64), 20 + (i % 600),
       CASE WHEN i % 3 = 0 THEN 'user' || (i % {USERS}) || '/uploads/' || i || '/bed.wav' END,
       CASE WHEN i % 3 = 0 THEN 'audio/wav' END, CASE WHEN i % 3 = 0 THEN 300000 + (i % 991) * 1000 END,
       CASE WHEN i % 3 = 0 THEN repeat('b', 64) END, CASE WHEN i % 3 = 0 THEN 20 + (i % 600) END,
       md5(i::text), {EVENTS_PER_TASK * LANGUAGES},
       now() - ($1 - i) * interval '{DAYS} days' / $1 - interval '2 minutes',
       now() - ($1 - i) * interval '{DAYS} days' / $1
FROM generate_series(1, $1) AS i
"""

# Outcome per task from a hash of its job and language: 94 % complete, 3 % failed, 1 % cancelled, the rest
# complete after a retry; the newest jobs' tasks are still on their way.
TASKS_SQL = f"""
WITH numbered AS (
    SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS i, count(*) OVER () AS n FROM jobs
), planned AS (
    SELECT j.id AS job_id, j.created_at, j.i, l.lang, l.ord,
           (j.i * 7 + l.ord * 13) % 100 AS r, j.i > j.n - {UNFINISHED_JOBS} AS unfinished
    FROM numbered j CROSS JOIN (VALUES ('es', 0), ('fr', 1)) AS l(lang, ord)
)
INSERT INTO language_tasks (job_id, target_language, stage, progress, attempts, claims, run_after, lease_owner,
                            lease_expires_at, leased_at, heartbeat_at, error_code, error_message, created_at,
                            updated_at, started_at, finished_at)
SELECT job_id, lang, stage,
       CASE WHEN stage = 'complete' THEN 1 ELSE 0.4 END,
       CASE WHEN r >= 98 THEN 2 ELSE 1 END, CASE WHEN r >= 98 THEN 2 ELSE 1 END,
       created_at, owner, expires, CASE WHEN owner IS NOT NULL THEN now() - interval '2 minutes' END,
       CASE WHEN owner IS NOT NULL THEN expires - interval '60 seconds' END,
       CASE WHEN stage = 'failed'
            THEN (ARRAY['provider_timeout', 'audio_undecodable', 'internal_error'])[1 + i % 3] END,
       CASE WHEN stage = 'failed' THEN 'The stage failed' END,
       created_at, created_at + interval '90 seconds', created_at + interval '1 second',
       CASE WHEN stage IN ('complete', 'failed', 'cancelled') THEN created_at + interval '90 seconds' END
FROM (
    SELECT p.*,
           CASE WHEN NOT unfinished THEN (CASE WHEN r BETWEEN 94 AND 96 THEN 'failed' WHEN r = 97 THEN 'cancelled'
                                               ELSE 'complete' END)
                ELSE (ARRAY['queued', 'stt', 'translating', 'dubbing', 'mixing', 'exporting'])[1 + r % 6] END AS stage,
           CASE WHEN unfinished AND r % 6 > 0 THEN 'worker-' || (r % 4) || ':' || (100 + r % 4) || ':1-abc' END
               AS owner,
           CASE WHEN unfinished AND r % 6 > 0 THEN now() + CASE WHEN r % 20 = 1 THEN interval '-5 minutes'
                                                                ELSE interval '40 seconds' END END AS expires
    FROM planned p
) AS t
"""

# 25 events per task: queued; per work stage its `stage` event (from translating on carrying the finished stage's
# engine and seconds) and three progress events; the final `stage` (complete, or `failed` with its error); three
# artifacts. A retried task's first progress in mixing is a `stage` event with the error instead.
EVENTS_SQL = f"""
WITH t AS (
    SELECT t.id, t.job_id, t.target_language, t.stage AS final, j.created_at,
           row_number() OVER (PARTITION BY t.job_id ORDER BY t.target_language) - 1 AS ord,
           t.attempts, hashtext(t.id::text) AS h
    FROM language_tasks t JOIN jobs j ON j.id = t.job_id
), e AS (
    SELECT t.*, n,
           CASE WHEN n = 1 THEN 0 WHEN n <= 21 THEN (n - 2) / 4 + 1 ELSE 6 END AS stage_no,
           CASE WHEN n <= 21 THEN (n - 2) % 4 ELSE n - 22 END AS step
    FROM t CROSS JOIN generate_series(1, {EVENTS_PER_TASK}) AS n
)
INSERT INTO task_events (job_id, seq, task_id, target_language, kind, stage, progress, data, created_at)
SELECT job_id, ord * {EVENTS_PER_TASK} + n, id, target_language,
       CASE WHEN n = 22 AND final = 'failed' THEN 'failed'
            WHEN n = 1 OR (n <= 21 AND step = 0) OR n = 22 THEN 'stage'
            WHEN n = 15 AND attempts = 2 THEN 'stage'
            WHEN n > 22 THEN 'artifact' ELSE 'progress' END,
       CASE WHEN n = 22 THEN (CASE WHEN final = 'failed' THEN 'failed' ELSE 'complete' END)
            WHEN n > 22 THEN 'exporting'
            ELSE (ARRAY['queued', 'stt', 'translating', 'dubbing', 'mixing', 'exporting'])[1 + stage_no] END,
       least(1, n / 22.0),
       CASE WHEN n = 22 AND final = 'failed'
                THEN jsonb_build_object('error', jsonb_build_object('code', 'provider_timeout', 'message', 'x'),
                                        'failed_in', 'dubbing')
            WHEN n = 15 AND attempts = 2
                THEN jsonb_build_object('error', jsonb_build_object('code', 'provider_unavailable', 'message', 'y'))
            WHEN (n <= 21 AND step = 0 AND stage_no >= 2) OR n = 22 THEN jsonb_build_object(
                'finished_stage', (ARRAY['stt', 'translating', 'dubbing', 'mixing', 'exporting'])[stage_no - 1],
                'engine', CASE stage_no - 1
                              WHEN 1 THEN CASE WHEN h % 10 = 0 THEN 'deepgram' ELSE 'faster-whisper' END
                              WHEN 2 THEN CASE WHEN h % 10 = 0 THEN 'openai' ELSE 'apertium' END
                              WHEN 3 THEN CASE WHEN h % 10 = 0 THEN 'deepgram-aura' ELSE 'espeak-ng' END
                              ELSE 'builtin' END,
                'stage_seconds', round((1 + abs(h % 1000) / 100.0 * (stage_no - 1))::numeric, 3),
                'figures', jsonb_build_object('audio_seconds', 60))
            WHEN n > 22 THEN jsonb_build_object('artifact', jsonb_build_object('kind', 'master_wav'))
            ELSE '{{}}'::jsonb END,
       created_at + n * interval '3 seconds'
FROM e
"""

ARTIFACTS_SQL = """
INSERT INTO artifacts (job_id, task_id, target_language, kind, object_path, sha256, size_bytes, content_type,
                       created_at, expires_at, deleted_at)
SELECT t.job_id, t.id, t.target_language, k.kind, j.owner_id || '/jobs/' || j.id || '/' || t.target_language || '/'
       || k.kind, repeat('c', 64), k.size, 'audio/wav', t.finished_at, t.finished_at + interval '48 hours',
       CASE WHEN t.finished_at + interval '48 hours' < now() THEN t.finished_at + interval '49 hours' END
FROM language_tasks t JOIN jobs j ON j.id = t.job_id
CROSS JOIN (VALUES ('master_wav', 20000000), ('master_web', 2000000), ('voice_stem', 10000000),
                   ('captions_srt', 4000), ('captions_vtt', 4000), ('manifest', 30000)) AS k(kind, size)
WHERE t.stage = 'complete'
UNION ALL
SELECT j.id, NULL, NULL, k.kind, j.owner_id || '/jobs/' || j.id || '/source/' || k.kind, repeat('c', 64), k.size,
       'application/json', j.created_at + interval '30 seconds', j.created_at + interval '48 hours',
       CASE WHEN j.created_at + interval '48 hours' < now() THEN j.created_at + interval '49 hours' END
FROM jobs j CROSS JOIN (VALUES ('transcript_json', 50000), ('transcript_srt', 8000), ('transcript_vtt', 8000))
     AS k(kind, size)
"""

UPLOADS_SQL = """
INSERT INTO uploads (object_path, owner_id, kind, content_type, declared_size_bytes, created_at, url_expires_at,
                     first_job_id, used_at, deleted_at)
SELECT voice_path, owner_id, 'voice', 'audio/wav', voice_size_bytes, created_at - interval '1 minute',
       created_at + interval '2 hours', id, created_at, inputs_deleted_at FROM jobs
UNION ALL
SELECT background_path, owner_id, 'background', 'audio/wav', background_size_bytes, created_at - interval '1 minute',
       created_at + interval '2 hours', id, created_at, inputs_deleted_at FROM jobs WHERE background_path IS NOT NULL
UNION ALL
SELECT 'user' || (i % 500) || '/uploads/unused-' || i || '/voice.wav', 'user' || (i % 500), 'voice', 'audio/wav',
       500000, now() - i * interval '1 minute', now() - i * interval '1 minute' + interval '2 hours', NULL, NULL,
       CASE WHEN i > 1440 THEN now() - i * interval '1 minute' + interval '24 hours' END
FROM generate_series(1, $1) AS i
"""

FINISH_SQL = """
UPDATE jobs j SET status = job_status_from_tasks(j.id),
                  inputs_deleted_at = CASE WHEN j.created_at < now() - interval '50 hours'
                                           THEN j.created_at + interval '50 hours' END;
INSERT INTO retention_runs (runner, trigger, started_at, finished_at, report)
SELECT 'host:' || i, 'schedule', now() - i * interval '1 hour', now() - i * interval '1 hour' + interval '3 seconds',
       '{"artifacts": 120}' FROM generate_series(1, 720) AS i;
"""


async def build(url: str, jobs: int) -> dict[str, Any]:
    conn = await connection.connect(url)
    try:
        timings: dict[str, float] = {}
        for name, sql, args in (("jobs", JOBS_SQL, (jobs,)), ("language_tasks", TASKS_SQL, ()),
                                ("task_events", EVENTS_SQL, ()), ("artifacts", ARTIFACTS_SQL, ()),
                                ("status_and_runs", FINISH_SQL, ()), ("uploads", UPLOADS_SQL, (jobs // 4,))):
            started = time.perf_counter()
            await conn.execute(sql, *args)
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"  {name:<16} {timings[name]:>6} s", flush=True)
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze"] = round(time.perf_counter() - started, 1)
        counts = {table: await conn.fetchval(f"SELECT count(*) FROM {table}")
                  for table in ("jobs", "language_tasks", "task_events", "artifacts", "uploads", "retention_runs")}
        sizes = {table: await conn.fetchval(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))")
                 for table in counts}
        return {"build_seconds": timings, "rows": counts, "sizes": sizes}
    finally:
        await conn.close()


# -- measuring -------------------------------------------------------------------------------------------
def walk(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(walk(child))
    return nodes


async def explain(conn: asyncpg.Connection, sql: str, repeat: int) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) `repeat` times (the first warms the cache); the median and the plan's shape."""
    runs = []
    for _ in range(repeat):
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        runs.append((json.loads(raw) if isinstance(raw, str) else raw)[0])
    last = runs[-1]
    nodes = walk(last["Plan"])
    wall = []
    for _ in range(repeat):
        started = time.perf_counter()
        await conn.fetch(sql)
        wall.append((time.perf_counter() - started) * 1000)
    return {
        "execution_ms": round(statistics.median(r["Execution Time"] for r in runs[1:] or runs), 2),
        "planning_ms": round(statistics.median(r["Planning Time"] for r in runs[1:] or runs), 2),
        "round_trip_ms": round(statistics.median(wall[1:] or wall), 2),
        "rows": last["Plan"].get("Actual Rows"),
        "shared_hit_blocks": last["Plan"].get("Shared Hit Blocks", 0),
        "shared_read_blocks": last["Plan"].get("Shared Read Blocks", 0),
        "indexes": sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
        "seq_scans": sorted({n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}),
    }


async def timed(call: Any, repeat: int) -> dict[str, Any]:
    """Median wall time of `await call()` (after one warm-up) as the service makes it, through the pool."""
    wall = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        wall.append((time.perf_counter() - started) * 1000)
    return {"round_trip_ms": round(statistics.median(wall[1:] or wall), 2)}


QUERIES: dict[str, str] = {f"ops.{view}": f"SELECT * FROM ops.{view}" for view in VIEWS}
QUERIES["ops.stage_duration_stats(7 days)"] = "SELECT * FROM ops.stage_duration_stats(interval '7 days')"
QUERIES["metrics scrape: stalled count"] = "SELECT count(*) FROM ops.stalled_tasks"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50,000 task_events instead of 1,000,000")
    parser.add_argument("--events", type=int, default=1_000_000, help="task_events rows (25 per task, 2 per job)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per query (the first is a warm-up)")
    args = parser.parse_args()
    events = 50_000 if args.quick else args.events
    jobs = events // (EVENTS_PER_TASK * LANGUAGES)
    print(f"ops views on {events:,} task_events ({jobs:,} jobs); PostgreSQL at {ADMIN_URL}")
    results: dict[str, Any] = {"name": "ops_views", "mode": "quick" if args.quick else "full",
                               "environment": machine.environment(), "postgres": await machine.server_info(),
                               "load_average_before": machine.load_average()}
    async with scratch_database(ADMIN_URL, "bench_ops") as url:
        results["fixture"] = await build(url, jobs)
        conn = await connection.connect(url)
        try:
            measured = {name: await explain(conn, sql, args.repeat) for name, sql in QUERIES.items()}
        finally:
            await conn.close()
        pool = await connection.create_pool(url, max_size=2)
        try:
            with tempfile.TemporaryDirectory() as data_dir:
                settings = Settings(data_dir=Path(data_dir))
                measured["metrics scrape (ops.snapshot)"] = await timed(lambda: ops.snapshot(pool), args.repeat)
                measured["retention --dry-run (preview)"] = await timed(lambda: retention.preview(pool, settings),
                                                                        args.repeat)
        finally:
            await pool.close()
    results["queries"] = measured
    results["load_average_after"] = machine.load_average()
    results["notes"] = ("execution_ms: median of EXPLAIN ANALYZE's execution time after one warm-up run; "
                        "round_trip_ms: the same query fetched by asyncpg. indexes / seq_scans: what the last plan "
                        "read. The machine is shared: figures move by up to 2x between runs.")
    print(f"\n{'query':<36} {'exec ms':>9} {'trip ms':>9} {'rows':>6}  reads through")
    for name, figures in measured.items():
        through = ", ".join(figures.get("indexes", [])) or "-"
        if figures.get("seq_scans"):
            through += f"; seq scan {', '.join(figures['seq_scans'])}"
        print(f"{name:<36} {figures.get('execution_ms', ''):>9} {figures['round_trip_ms']:>9} "
              f"{figures.get('rows', '') if figures.get('rows') is not None else '':>6}  "
              f"{through if 'indexes' in figures else ''}")
    write_results("ops_views", results, quick=args.quick)


if __name__ == "__main__":
    machine.run(main)
