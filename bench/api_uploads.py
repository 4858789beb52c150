"""`POST /v1/uploads` under 64 concurrent clients vs a bare Starlette route, each served in its own process.

Each app runs under uvicorn in a separate process (bench/_lib/serve_app.py, configured from the environment
like `dubbing serve`). `--concurrency` closed-loop clients, one keep-alive connection each, send their
next request as soon as the last one answered. After `--warmup` seconds, requests that *start* within
the next `--duration` seconds are counted: requests/s and latency percentiles as the client sees them.
The CPU time the server and the client processes used over that window says which of them the 2 cores
ran out for.

Two load generators, both run by default:
  raw    a minimal HTTP/1.1 client on asyncio streams (~0.1 ms of CPU a request): measures the server.
  httpx  httpx.AsyncClient. In this venv it costs ~1.5 ms of CPU a request even when used well, so on
         2 cores it measures mostly itself. Used well means: one AsyncClient per connection
         (`--httpx-pool per-connection`, default), since one AsyncClient with a pool of 64 spends
         O(connections x waiting requests) in httpcore's pool on every request and tops out near
         100 req/s here (`--httpx-pool shared` shows it); and `sniffio` marked absent in
         sys.modules, since it is not installed and httpcore retries `import sniffio`, a full
         sys.path search, for every lock it creates (`--httpx-sniffio-search` keeps that cost).

    .venv/bin/python bench/api_uploads.py                 # 2 s warm-up + 10 s, each app
    .venv/bin/python bench/api_uploads.py --quick         # 0.3 s + 1 s, raw client only
    .venv/bin/python bench/api_uploads.py --clients raw --client-procs 2 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _lib import ADMIN_URL, machine, servers
from _lib.results import latency_summary_ms, write_results

from tests.support import scratch_database

BODY = {"files": [{"kind": "voice", "filename": "voice.wav", "content_type": "audio/wav", "size_bytes": 1_234_567}]}
P99_TARGET_MS = 50.0


@dataclass(frozen=True)
class LoadPlan:
    client: str  # "raw" or "httpx"
    httpx_pool: str  # "per-connection" or "shared"
    httpx_sniffio_search: bool
    port: int
    headers: dict[str, str]
    connections: int
    start_at: float  # time.monotonic() (system-wide on Linux) when the measured window opens
    end_at: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Send = Callable[[], Awaitable[int]]  # one request; returns the status code


@contextlib.asynccontextmanager
async def raw_connection(plan: LoadPlan) -> AsyncIterator[Send]:
    """One keep-alive HTTP/1.1 connection on asyncio streams: write the request, read the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", plan.port)
    body = json.dumps(BODY).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in plan.headers.items())
    request = (f"POST /v1/uploads HTTP/1.1\r\nhost: 127.0.0.1:{plan.port}\r\ncontent-type: application/json\r\n"
               f"{head}content-length: {len(body)}\r\n\r\n").encode() + body

    async def send() -> int:
        writer.write(request)
        response_head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for header in response_head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(response_head[9:12])

    try:
        yield send
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _load(plan: LoadPlan) -> dict[str, Any]:
    """Closed-loop workers, one per connection; latencies of requests started inside the window."""
    if plan.client == "httpx" and not plan.httpx_sniffio_search:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]  # `import sniffio` fails at once
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        sends: list[Send] = []
        if plan.client == "raw":
            for _ in range(plan.connections):
                sends.append(await stack.enter_async_context(raw_connection(plan)))
        else:
            clients = plan.connections if plan.httpx_pool == "per-connection" else 1
            size = 1 if plan.httpx_pool == "per-connection" else plan.connections
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            pool = [await stack.enter_async_context(httpx.AsyncClient(base_url=plan.base_url, limits=limits,
                                                                      timeout=30)) for _ in range(clients)]
            for i in range(plan.connections):
                client = pool[i % clients]

                async def send(client: httpx.AsyncClient = client) -> int:
                    return (await client.post("/v1/uploads", json=BODY, headers=plan.headers)).status_code

                sends.append(send)

        async def worker(send: Send) -> None:
            while True:
                started = time.monotonic()
                if started >= plan.end_at:
                    return
                try:
                    status = await send()
                    outcome = "ok" if status == 201 else f"http_{status}"
                except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as exc:
                    outcome = type(exc).__name__
                if started >= plan.start_at:
                    if outcome == "ok":
                        latencies.append(time.monotonic() - started)
                    else:
                        errors[outcome] = errors.get(outcome, 0) + 1

        cpu_at_start: float | None = None

        async def mark_cpu() -> None:
            nonlocal cpu_at_start
            await asyncio.sleep(max(0.0, plan.start_at - time.monotonic()))
            cpu_at_start = time.process_time()

        marker = asyncio.create_task(mark_cpu())
        await asyncio.gather(*(worker(send) for send in sends))
        await marker
    cpu = time.process_time() - (cpu_at_start or 0.0)
    return {"latencies": latencies, "errors": errors, "cpu_seconds": cpu}


def _load_in_process(plan: LoadPlan) -> dict[str, Any]:
    return machine.run(lambda: _load(plan))


async def measure(server: servers.Server, client: str, args: argparse.Namespace) -> dict[str, Any]:
    """Drive `server` with `args.concurrency` connections over `args.client_procs` processes."""
    headers = servers.auth("bench-user", 24 * 3600)
    async with httpx.AsyncClient(base_url=server.base_url) as check:
        first = await check.post("/v1/uploads", json=BODY, headers=headers)
        if first.status_code != 201:
            raise RuntimeError(f"{server.app} app: POST /v1/uploads answered {first.status_code}: {first.text}")
    now = time.monotonic()
    start_at = now + 0.5 + args.warmup  # 0.5 s for client processes to start
    end_at = start_at + args.duration
    per_proc = [args.concurrency // args.client_procs + (1 if i < args.concurrency % args.client_procs else 0)
                for i in range(args.client_procs)]
    plans = [LoadPlan(client, args.httpx_pool, args.httpx_sniffio_search, server.port, headers, n, start_at, end_at)
             for n in per_proc]

    async def server_cpu() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        before = machine.proc_cpu_seconds(server.pid)[0]
        await asyncio.sleep(max(0.0, end_at - time.monotonic()))
        return before, machine.proc_cpu_seconds(server.pid)[0]

    cpu_task = asyncio.create_task(server_cpu())
    if args.client_procs == 1:
        outcomes = [await _load(plans[0])]
    else:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.client_procs) as pool:
            outcomes = await loop.run_in_executor(None, pool.map, _load_in_process, plans)
    before, after = await cpu_task
    rss = machine.rss_kib(server.pid)

    latencies = [x for o in outcomes for x in o["latencies"]]
    errors: dict[str, int] = {}
    for o in outcomes:
        for key, count in o["errors"].items():
            errors[key] = errors.get(key, 0) + count
    return {
        "client": client if client == "raw" else f"httpx ({args.httpx_pool} pool"
        + (", sniffio import searched" if args.httpx_sniffio_search else "") + ")",
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / args.duration, 1),
        "latency": latency_summary_ms(latencies),
        "server_cpu_cores": round((after - before) / args.duration, 2),
        "client_cpu_cores": round(sum(o["cpu_seconds"] for o in outcomes) / args.duration, 2),
        "server_rss_kib": rss,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="0.3 s warm-up, 1 s measured, raw client only")
    parser.add_argument("--concurrency", type=int, default=64, help="connections = concurrent clients")
    parser.add_argument("--client-procs", type=int, default=1, help="spread the clients over this many processes")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two apps this many times")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before each run, wait up to this many seconds for the (shared) machine to be idle")
    parser.add_argument("--clients", default=None,
                        help="load generators to run: raw, httpx or raw,httpx (default: both; --quick: raw)")
    parser.add_argument("--httpx-pool", choices=["per-connection", "shared"], default="per-connection",
                        help="one AsyncClient per connection, or one AsyncClient with a pool of --concurrency")
    parser.add_argument("--httpx-sniffio-search", action="store_true",
                        help="let httpcore search sys.path for the missing sniffio on every lock it creates")
    servers.add_app_option(parser)
    return parser.parse_args()


def line(name: str, r: dict[str, Any]) -> str:
    lat = r["latency"]
    return (f"{name:<21} {r['client'][:5]:<6} {r['requests_per_s']:>7.1f} req/s  p50 {lat['p50_ms']:>7.2f} ms  "
            f"p99 {lat['p99_ms']:>7.2f} ms  max {lat['max_ms']:>7.1f} ms  errors {sum(r['errors'].values())}  "
            f"cpu: server {r['server_cpu_cores']}, client {r['client_cpu_cores']} cores "
            f"(machine {r['machine_busy_before']:.0%} busy before)")


async def main() -> None:
    args = parse_args()
    if args.quick:
        args.warmup, args.duration = 0.3, 1.0
    clients = [c for c in (args.clients or ("raw" if args.quick else "raw,httpx")).split(",") if c]
    if not clients or set(clients) - {"raw", "httpx"}:
        raise SystemExit("--clients takes raw, httpx or raw,httpx")
    machine.raise_nofile(4096)
    print(f"POST /v1/uploads, {args.concurrency} concurrent clients over {args.client_procs} process(es), "
          f"{args.warmup} s warm-up + {args.duration} s measured per app and load generator\n")
    results: dict[str, Any] = {
        "name": "api_uploads", "mode": "quick" if args.quick else "full",
        "environment": machine.environment(), "load_average_before": machine.load_average(),
        "concurrency": args.concurrency, "client_procs": args.client_procs, "warmup_s": args.warmup,
        "duration_s": args.duration, "app": args.app, "runs": {f"{k}/{c}": [] for c in clients
                                                               for k in ("service", "bare")},
    }
    async with scratch_database(ADMIN_URL, "bench_api") as url:
        for _ in range(args.repeat):
            for kind in ("service", "bare"):
                with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
                    async with servers.serving(args.app if kind == "service" else "bare", url, Path(tmp)) as server:
                        for client in clients:
                            busy = await machine.wait_for_quiet(args.quiet_wait)
                            result = await measure(server, client, args)
                            result["machine_busy_before"] = busy
                            results["runs"][f"{kind}/{client}"].append(result)
                            print(line("POST /v1/uploads" if kind == "service" else "bare Starlette route", result))

    def median_run(key: str) -> dict[str, Any]:
        runs: list[dict[str, Any]] = sorted(results["runs"][key], key=lambda r: r["requests_per_s"])
        return runs[len(runs) // 2]

    summary: dict[str, Any] = {}
    for client in clients:
        service, bare = median_run(f"service/{client}"), median_run(f"bare/{client}")
        summary[client] = {
            "service_requests_per_s": service["requests_per_s"],
            "service_p50_ms": service["latency"]["p50_ms"],
            "service_p99_ms": service["latency"]["p99_ms"],
            "bare_requests_per_s": bare["requests_per_s"],
            "bare_p50_ms": bare["latency"]["p50_ms"],
            "bare_p99_ms": bare["latency"]["p99_ms"],
            "ratio_requests_per_s_service_vs_bare": round(service["requests_per_s"] / bare["requests_per_s"], 3),
            "ratio_p99_service_vs_bare": round(service["latency"]["p99_ms"] / bare["latency"]["p99_ms"], 3),
            "p99_target_ms": P99_TARGET_MS,
            "p99_target_met": service["latency"]["p99_ms"] < P99_TARGET_MS,
        }
    results["summary"] = summary
    results["load_average_after"] = machine.load_average()
    http_impl = "httptools" if importlib.util.find_spec("httptools") else "h11 (httptools is not installed)"
    results["uvicorn_http"] = http_impl
    results["notes"] = (
        "Closed loop: each client sends its next request when the last one answered, so latency is about "
        "concurrency / throughput, and the load generator shares the 2 cores with the server (see cpu_cores). "
        "Both apps run under uvicorn.run with the same options in their own process; uvicorn picks uvloop and "
        f"{http_impl}. The raw client measures the server; the httpx figures are bounded by httpx's own CPU cost "
        "(see this script's docstring)."
    )
    print()
    for client, s in summary.items():
        print(f"{client:<6} service/bare: throughput {s['ratio_requests_per_s_service_vs_bare']}x, p99 "
              f"{s['ratio_p99_service_vs_bare']}x; service p99 {s['service_p99_ms']} ms (target < {P99_TARGET_MS} ms: "
              f"{'met' if s['p99_target_met'] else 'NOT met'})")
    write_results("api_uploads", results, quick=args.quick)


if __name__ == "__main__":
    machine.run(main)
