"""SSE fan-out: 1,000 open `GET /v1/jobs/{id}/events` streams on one service process, commit-to-client latency.

The service runs in its own process (bench/_lib/serve_app.py, configured like `dubbing serve`). Its jobs'
tasks are claimed by this script first (`tasks.claim(pool, "bench", n, 600)`), so its own supervisor
leaves them alone. `--streams` streams, spread evenly over `--jobs` jobs, are opened by `--client-procs`
client processes, each a minimal HTTP/1.1 + chunked + SSE reader on asyncio streams (uvloop), so that
the clients cost little CPU next to the server on 2 cores.

Once every stream has its backlog, this process calls `tasks.report_progress(...)` for each job,
`--rounds` rounds `--interval` seconds apart, and notes time.monotonic() just after each call returns
(the commit); first with a round's updates spread evenly over the interval, then in bursts (all jobs
at once). Each client notes time.monotonic() when an event's chunk has been read (the
clock is system-wide on Linux). Latency = arrival - commit, over every (stream, event) pair.

Memory per stream = (VmRSS of the service with all streams open - VmRSS before) / streams, both read
from /proc after a warm-up that opened and closed a few streams (so pool connections and lazily
imported code are in the baseline).

    .venv/bin/python bench/sse_fanout.py                  # 1000 streams over 4 jobs, 20+20 rounds
    .venv/bin/python bench/sse_fanout.py --quick          # 100 streams, 8+8 rounds
    .venv/bin/python bench/sse_fanout.py --streams 5000 --client-procs 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
from _lib import ADMIN_URL, machine, servers
from _lib.results import latency_summary_ms, write_results

from service.db import connection, jobs, tasks
from service.db.database import Database
from service.db.jobs import InputObject, NewJob
from tests.support import scratch_database

OWNER = "bench-user"
LEASE_OWNER = "bench"
P99_TARGET_MS = 250.0


# -- client processes -----------------------------------------------------------------------------
@dataclass
class ClientPlan:
    port: int
    token: str
    streams: list[tuple[str, int]]  # (job id, the seq its backlog ends at), one per stream
    open_concurrency: int = 50


@dataclass
class Stream:
    job_id: str
    backlog_seq: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_seq: int = 0
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (update number, monotonic time)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False


async def open_stream(plan: ClientPlan, job_id: str, backlog_seq: int) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", plan.port)
    writer.write(f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nhost: 127.0.0.1:{plan.port}\r\n"
                 f"authorization: Bearer {plan.token}\r\naccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
        raise RuntimeError(f"stream for {job_id} answered: {head[:200]!r}")
    return Stream(job_id, backlog_seq, reader, writer)


async def read_stream(stream: Stream) -> None:
    """Read chunks until the stream ends; note when each event with a `bench_i` arrives."""
    buffer = b""
    reader = stream.reader
    while True:
        size_line = await reader.readline()
        if not size_line:
            break
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        buffer += (await reader.readexactly(size + 2))[:-2]
        arrived = time.monotonic()
        while b"\n\n" in buffer:
            message, buffer = buffer.split(b"\n\n", 1)
            seq, data = 0, b""
            for line in message.split(b"\n"):
                if line.startswith(b"id: "):
                    seq = int(line[4:])
                elif line.startswith(b"data: "):
                    data = line[6:]
            if not seq:
                continue  # `retry:` or a keep-alive comment
            stream.last_seq = seq
            if data and b'"bench_i"' in data:
                stream.arrivals.append((int(json.loads(data)["bench_i"]), arrived))
            if seq >= stream.backlog_seq:
                stream.ready.set()
    stream.ended = True


async def client_main(plan: ClientPlan, pipe: Connection) -> None:
    """Open the streams, tell the parent, read until told to stop, send back what arrived when."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(plan.open_concurrency)

    async def opened(job_id: str, backlog_seq: int) -> Stream:
        async with gate:
            return await open_stream(plan, job_id, backlog_seq)

    cpu_start = time.process_time()
    streams = await asyncio.gather(*(opened(j, s) for j, s in plan.streams))
    readers = [asyncio.create_task(read_stream(s)) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in streams)), 120)
    pipe.send(("ready", len(streams)))
    command = await loop.run_in_executor(None, pipe.recv)  # "measure": the updates are starting
    assert command == "measure"
    cpu_measure = time.process_time()
    expected = await loop.run_in_executor(None, pipe.recv)  # {job_id: number of updates sent}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(len(s.arrivals) < expected[s.job_id] for s in streams):
        await asyncio.sleep(0.05)
    cpu_end = time.process_time()
    for task in readers:
        task.cancel()
    for s in streams:
        s.writer.close()
    await asyncio.gather(*readers, return_exceptions=True)
    pipe.send({
        "arrivals": [(s.job_id, s.arrivals) for s in streams],
        "ended_early": sum(s.ended for s in streams),
        "cpu_total_s": cpu_end - cpu_start,
        "cpu_measure_s": cpu_end - cpu_measure,
    })


def client_process(plan: ClientPlan, pipe: Connection) -> None:
    try:
        machine.run(lambda: client_main(plan, pipe))
    except Exception as exc:  # tell the parent rather than leave it waiting
        pipe.send(("error", repr(exc)))
        raise


# -- this process ---------------------------------------------------------------------------------
async def create_claimed_jobs(pool: asyncpg.Pool, n_jobs: int) -> list[tuple[str, Any, int]]:
    """Jobs with one language each, their tasks claimed by us and in `stt`: (job id, task id, last seq)."""
    for i in range(n_jobs):
        voice = InputObject(f"{OWNER}/uploads/{i}/voice.wav", "audio/wav", 100, "0" * 64, 1.0)
        await jobs.create(pool, NewJob(OWNER, "en", ["es"], voice, None, None, uuid.uuid4().hex))
    claimed = await tasks.claim(pool, LEASE_OWNER, n_jobs, 600)
    if len(claimed) != n_jobs:
        raise RuntimeError(f"claimed {len(claimed)} of {n_jobs} tasks")
    out = []
    for task in claimed:
        assert await tasks.enter_stage(Database.on(pool), task.id, LEASE_OWNER, "stt")
        seq = await pool.fetchval("SELECT last_event_seq FROM jobs WHERE id = $1", task.job_id)
        out.append((str(task.job_id), task.id, int(seq)))
    return out


async def warm_up(server: servers.Server, job_id: str, backlog_seq: int, n: int) -> None:
    """Open and close a few streams at once, so the pool and lazily loaded code are in the baseline."""
    plan = ClientPlan(server.port, servers.token(OWNER), [])
    streams = await asyncio.gather(*(open_stream(plan, job_id, backlog_seq) for _ in range(n)))
    readers = [asyncio.create_task(read_stream(s)) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in streams)), 30)
    for task in readers:
        task.cancel()
    for s in streams:
        s.writer.close()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.sleep(1.0)


async def recv(pipe: Connection, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, pipe.poll, timeout):
        raise TimeoutError("a client process did not answer")
    message = await loop.run_in_executor(None, pipe.recv)
    if isinstance(message, tuple) and message[0] == "error":
        raise RuntimeError(f"client process failed: {message[1]}")
    return message


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


async def driver_pool(url: str) -> asyncpg.Pool:
    """The service's pool set-up, minus asyncpg's reset query on release: report_progress() then returns
    as soon as its COMMIT is acknowledged, not one more round trip later, so commit times are exact."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4, init=connection._init_connection, reset=_no_reset)
    assert pool is not None
    return pool


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with scratch_database(ADMIN_URL, "bench_sse") as url:
        pool = await driver_pool(url)
        try:
            claimed = await create_claimed_jobs(pool, args.jobs)
            with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
                async with servers.serving(args.app, url, Path(tmp)) as server:
                    await warm_up(server, claimed[0][0], claimed[0][2], min(20, args.streams))
                    results["machine_busy_before"] = await machine.wait_for_quiet(args.quiet_wait)
                    rss_before = machine.rss_kib(server.pid)
                    results.update(await fan_out(args, server, pool, claimed, rss_before))
        finally:
            await pool.close()
    return results


async def fan_out(args: argparse.Namespace, server: servers.Server, pool: asyncpg.Pool,
                  claimed: list[tuple[str, Any, int]], rss_before: int) -> dict[str, Any]:
    token = servers.token(OWNER, 24 * 3600)
    assignments = [(claimed[i % len(claimed)][0], claimed[i % len(claimed)][2]) for i in range(args.streams)]
    context = multiprocessing.get_context("spawn")
    procs: list[tuple[Any, Connection]] = []  # (SpawnProcess, its pipe)
    try:
        opening = time.monotonic()
        for p in range(args.client_procs):
            parent_end, child_end = context.Pipe()
            plan = ClientPlan(server.port, token, assignments[p :: args.client_procs])
            proc = context.Process(target=client_process, args=(plan, child_end), daemon=True)
            proc.start()
            procs.append((proc, parent_end))
        opened = sum([(await recv(pipe, 180))[1] for _, pipe in procs])
        open_seconds = time.monotonic() - opening
        await asyncio.sleep(1.0)  # let the server settle before reading its memory
        rss_open = machine.rss_kib(server.pid)
        print(f"{opened} streams open in {open_seconds:.1f} s; service RSS {rss_before / 1024:.1f} MiB before, "
              f"{rss_open / 1024:.1f} MiB with them open")

        for _, pipe in procs:
            pipe.send("measure")
        cpu_before = machine.proc_cpu_seconds(server.pid)[0]
        commits: dict[int, float] = {}
        phases: dict[str, range] = {}
        drive_started = time.monotonic()
        for pattern in patterns(args.pattern):
            first = len(commits)
            await drive(pool, claimed, pattern, args, commits)
            phases[pattern] = range(first, len(commits))
        drive_seconds = time.monotonic() - drive_started
        server_cpu = machine.proc_cpu_seconds(server.pid)[0] - cpu_before
        expected = {job_id: args.rounds * len(phases) for job_id, _, _ in claimed}
        for _, pipe in procs:
            pipe.send(expected)
        outcomes = [await recv(pipe, 60) for _, pipe in procs]
    finally:
        for proc, _ in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()

    by_update: dict[int, list[float]] = {}
    received = 0
    for outcome in outcomes:
        for _, arrivals in outcome["arrivals"]:
            received += len(arrivals)
            for i, arrived in arrivals:
                by_update.setdefault(i, []).append(arrived - commits[i])
    per_phase = {}
    for pattern, updates in phases.items():
        latencies = [x for i in updates for x in by_update.get(i, [])]
        per_phase[pattern] = {
            "updates": len(updates),
            "deliveries": len(latencies),
            "latency": latency_summary_ms(latencies),
            "first_client_latency": latency_summary_ms([min(by_update[i]) for i in updates if i in by_update]),
            "last_client_latency": latency_summary_ms([max(by_update[i]) for i in updates if i in by_update]),
        }
    expected_deliveries = len(commits) // len(claimed) * args.streams
    rss_per_stream = (rss_open - rss_before) / args.streams
    return {
        "streams": opened,
        "jobs": len(claimed),
        "client_procs": args.client_procs,
        "rounds_per_pattern": args.rounds,
        "interval_s": args.interval,
        "updates": len(commits),
        "updates_per_s": round(len(commits) / drive_seconds, 1),
        "deliveries_expected": expected_deliveries,
        "deliveries_received": received,
        "deliveries_missing": expected_deliveries - received,
        "deliveries_per_s": round(received / drive_seconds, 1),
        "streams_ended_early": sum(o["ended_early"] for o in outcomes),
        "open_seconds": round(open_seconds, 2),
        "latency": latency_summary_ms([x for v in by_update.values() for x in v]),
        "by_pattern": per_phase,
        "service_rss_kib_before": rss_before,
        "service_rss_kib_open": rss_open,
        "rss_kib_per_stream": round(rss_per_stream, 2),
        "service_cpu_cores_while_updating": round(server_cpu / drive_seconds, 2),
        "service_cpu_us_per_delivery": round(server_cpu / max(received, 1) * 1e6, 1),
        "clients_cpu_cores_while_updating": round(sum(o["cpu_measure_s"] for o in outcomes) / drive_seconds, 2),
    }


def patterns(choice: str) -> list[str]:
    return ["spread", "burst"] if choice == "both" else [choice]


async def drive(pool: asyncpg.Pool, claimed: list[tuple[str, Any, int]], pattern: str, args: argparse.Namespace,
                commits: dict[int, float]) -> None:
    """`args.rounds` rounds of one update per job, a round every `args.interval` seconds.

    spread: the round's updates evenly spaced over the interval; burst: all of them at once.
    """
    step = args.interval / len(claimed) if pattern == "spread" else 0.0
    db = Database.on(pool)
    for _ in range(args.rounds):
        round_started = time.monotonic()
        for j, (job_id, task_id, _) in enumerate(claimed):
            await asyncio.sleep(max(0.0, round_started + j * step - time.monotonic()))
            update = len(commits)
            ok = await tasks.report_progress(db, task_id, LEASE_OWNER, "stt", (update + 1) / 1e6, bench_i=update)
            commits[update] = time.monotonic()
            if not ok:
                raise RuntimeError(f"lost the lease on {job_id}")
        await asyncio.sleep(max(0.0, round_started + args.interval - time.monotonic()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 streams, 8 rounds of each pattern")
    parser.add_argument("--streams", type=int, default=1000, help="open SSE streams")
    parser.add_argument("--jobs", type=int, default=4, help="jobs the streams are spread over")
    parser.add_argument("--client-procs", type=int, default=4, help="client processes holding the streams")
    parser.add_argument("--rounds", type=int, default=20, help="updates per job, for each pattern")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between rounds (one update per job)")
    parser.add_argument("--pattern", choices=["both", "spread", "burst"], default="both",
                        help="a round's updates evenly spaced over the interval, all at once, or both in turn")
    servers.add_app_option(parser)
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before opening the streams, wait up to this many seconds for the machine to be idle")
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    if args.quick:
        args.streams, args.rounds, args.client_procs = min(args.streams, 100), min(args.rounds, 8), 2
    nofile = machine.raise_nofile(args.streams + 4096)
    print(f"{args.streams} SSE streams over {args.jobs} jobs, {args.client_procs} client processes; "
          f"{args.rounds} rounds of one update per job every {args.interval} s, pattern {args.pattern} "
          f"(open files limit {nofile})")
    started = time.monotonic()
    figures = await run(args)
    results: dict[str, Any] = {
        "name": "sse_fanout", "mode": "quick" if args.quick else "full",
        "environment": machine.environment(), "load_average_after": machine.load_average(),
        **figures,
    }
    lat = figures["latency"]
    met = figures["deliveries_missing"] == 0 and all(
        p["latency"]["p99_ms"] < P99_TARGET_MS for p in figures["by_pattern"].values())
    results["summary"] = {
        "streams": figures["streams"],
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "max_ms": lat["max_ms"],
        **{f"{name}_{key}": p[kind][f"{q}_ms"] for name, p in figures["by_pattern"].items()
           for key, kind, q in (("p50_ms", "latency", "p50"), ("p99_ms", "latency", "p99"),
                                ("last_client_p99_ms", "last_client_latency", "p99"))},
        "rss_kib_per_stream": figures["rss_kib_per_stream"],
        "deliveries_missing": figures["deliveries_missing"],
        "p99_target_ms": P99_TARGET_MS,
        "p99_target_met": met,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    results["notes"] = (
        "Latency runs from just after report_progress() returned in this process (its transaction committed) to "
        "the moment a client process had read the event's chunk: NOTIFY delivery to the service's one LISTEN "
        "connection, the fan-out to every subscribed stream, uvicorn/h11 writes and the client's own loop. "
        "first/last_client_latency are, per update, the latency of the first and of the last stream to get it. "
        "Patterns: spread = a round's updates (one per job) evenly spaced over the interval; burst = all at once, "
        "so later updates of a round queue behind the fan-out of earlier ones. Clients are minimal asyncio "
        "readers in separate processes; all processes share the machine's 2 cores."
    )
    s = results["summary"]
    print()
    for name, p in figures["by_pattern"].items():
        la, first, last = p["latency"], p["first_client_latency"], p["last_client_latency"]
        print(f"{name:<7} commit -> client: p50 {la['p50_ms']} ms, p99 {la['p99_ms']} ms, max {la['max_ms']} ms over "
              f"{la['count']} deliveries; per update: first stream p50 {first['p50_ms']} ms, last stream p50 "
              f"{last['p50_ms']} ms, p99 {last['p99_ms']} ms")
    print(f"all     p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms; {s['deliveries_missing']} deliveries missing")
    print(f"memory: {s['rss_kib_per_stream']} KiB per open stream; service CPU while updating "
          f"{figures['service_cpu_cores_while_updating']} cores "
          f"({figures['service_cpu_us_per_delivery']} us per delivery), clients "
          f"{figures['clients_cpu_cores_while_updating']} cores")
    print(f"target p99 < {P99_TARGET_MS} ms: {'met' if s['p99_target_met'] else 'NOT met'}; {s['wall_seconds']} s "
          f"(machine {figures['machine_busy_before']:.0%} busy before the streams opened)")
    write_results("sse_fanout", results, quick=args.quick)


if __name__ == "__main__":
    machine.run(main)
