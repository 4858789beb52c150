"""Shared helpers for the benchmarks: scratch databases, the service in its own process, figures, JSON.

Every benchmark runs against the PostgreSQL at `BENCH_DATABASE_URL` (default: the machine's local
server) in databases it creates and drops itself, and writes its figures to `bench/results/<name>.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
JWT_SECRET = "bench-secret-" + "x" * 40

if str(ROOT) not in sys.path:  # so `python bench/x.py` can import `service`
    sys.path.insert(0, str(ROOT))

T = TypeVar("T")


# -- databases ------------------------------------------------------------------------------------
def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(prefix: str, *, migrate: bool = True, template: str | None = None) -> AsyncIterator[str]:
    """A new database (migrated with the service's schema, or copied from `template`), dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = with_database(ADMIN_URL, name)
    try:
        if migrate and template is None:
            from service.db import migrations

            conn = await asyncpg.connect(url)
            try:
                await migrations.migrate(conn)
            finally:
                await conn.close()
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def server_info() -> dict[str, Any]:
    """The PostgreSQL settings that matter for these figures."""
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        info: dict[str, Any] = {"version": await conn.fetchval("SHOW server_version")}
        for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections"):
            info[name] = await conn.fetchval(f"SHOW {name}")
        return info
    finally:
        await conn.close()


async def commit_latency_ms(url: str, commits: int = 30) -> float:
    """Median wall time of one-row INSERT commits: the disk's fsync cost, which drifts on a shared machine."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (i int)")
        times = []
        for i in range(commits):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_commit_probe VALUES ($1)", i)
            times.append(time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_commit_probe")
        return round(sorted(times)[len(times) // 2] * 1000, 3)
    finally:
        await conn.close()


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def machine_busy(interval: float = 1.0) -> float:
    """Fraction of all CPUs busy over `interval` seconds (whoever used them)."""
    busy0, total0 = _cpu_times()
    await asyncio.sleep(interval)
    busy1, total1 = _cpu_times()
    return round((busy1 - busy0) / max(total1 - total0, 1), 3)


async def wait_for_quiet(max_wait: float, threshold: float = 0.2) -> float:
    """Wait (up to `max_wait` s) until under `threshold` of the CPUs are busy; returns the last reading.

    The machine is shared: another session's work skews every figure here by up to 2-3x.
    """
    started = time.monotonic()
    busy = await machine_busy(0.5)
    said = -math.inf
    while busy > threshold and time.monotonic() - started < max_wait:
        if time.monotonic() - said >= 30:
            print(f"  machine {busy:.0%} busy, waiting up to {max_wait - (time.monotonic() - started):.0f} s "
                  "for it to quiet down ...", flush=True)
            said = time.monotonic()
        busy = await machine_busy(2.0)
    return busy


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on this machine skews every figure here."""
    return [round(x, 2) for x in os.getloadavg()]


# -- figures --------------------------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    values = sorted(seconds)
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min_ms": round(values[0] * 1000, 3),
        "mean_ms": round(sum(values) / len(values) * 1000, 3),
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3),
    }


def git_revision() -> str:
    """The commit measured, with `+dirty` when service/ or sql/ has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "service", "sql"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    return {
        "git": git_revision(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "loop": "uvloop" if _has_uvloop() else "asyncio",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


# -- processes ------------------------------------------------------------------------------------
def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Callable[[], Awaitable[T]]) -> T:
    """asyncio.run on uvloop when installed: the loop uvicorn gives the service in production."""
    if _has_uvloop():
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())  # type: ignore[arg-type]
    return asyncio.run(main())  # type: ignore[arg-type]


def raise_nofile(wanted: int) -> int:
    """Raise the open-files limit (inherited by the processes started after this); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class ServerProcess:
    """An HTTP server in its own process, its log in a temporary file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1]))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def start(self, ready_path: str = "/healthz", timeout: float = 60.0) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(ready_path)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer {ready_path} in {timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def service_process(database_url: str, data_dir: Path, app: str = "service", **extra_env: str) -> ServerProcess:
    """An app in its own process, configured from the environment as an operator runs `dubbing serve`
    (warning-level JSON logs, one CPU worker).

    app: "service" (bench/serve_app.py: the real app, no engines), "bare" (a bare Starlette route) or
    "dubbing" (the `dubbing serve` command itself, which also builds the offline engines).
    """
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
        "CPU_WORKERS": "1",
        **extra_env,
    }
    if app == "dubbing":
        argv = [str(VENV_BIN / "dubbing"), "serve"]
    else:
        argv = [sys.executable, str(ROOT / "bench" / "serve_app.py"), app]
    return ServerProcess(f"{app} app", argv, env, port)


@contextlib.contextmanager
def stopping(*servers: ServerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def token(user: str, ttl_seconds: int = 3600) -> str:
    from service.api.auth import mint

    return mint(JWT_SECRET, user, ttl_seconds)
