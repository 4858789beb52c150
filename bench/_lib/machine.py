"""The machine the figures come from: what it is, how busy it is, and what processes use (from /proc).

The machine is shared: another session's work skews every figure by up to 2-3x, so the benchmarks record
the load, can wait for quiet, and attribute CPU time to the processes they measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import resource
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import ADMIN_URL, ROOT

T = TypeVar("T")
TICK = os.sysconf("SC_CLK_TCK")


# -- what ran where -------------------------------------------------------------------------------
def _first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, IndexError):
        return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT).stdout.splitlines()[0]
    return "?"


def environment() -> dict[str, Any]:
    """The commit measured (and what has changed since in the code that matters), the machine, the tools."""
    changed = subprocess.run(["git", "status", "--porcelain", "--", "service", "sql", "tests", "bench"],
                             capture_output=True, text=True, check=False, cwd=ROOT).stdout.splitlines()
    out: dict[str, Any] = {
        "git_commit": _first_line(["git", "rev-parse", "--short", "HEAD"]),
        "uncommitted_changes_in": sorted(line[3:] for line in changed if line.strip()),
        "python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "ffmpeg": _first_line(["ffmpeg", "-version"]), "espeak_ng": _first_line(["espeak-ng", "--version"]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with contextlib.suppress(RuntimeError):  # the loop this process measures on, when it runs one
        out["event_loop"] = "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
    return out


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


async def server_info() -> dict[str, Any]:
    """The PostgreSQL settings that matter for these figures."""
    import asyncpg  # (imported here: pool workers import this module and should stay small)

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
    import asyncpg

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


# -- how busy the machine is ----------------------------------------------------------------------
def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def machine_busy(interval: float = 1.0) -> float:
    """Share of all CPUs busy over `interval` seconds (whoever used them)."""
    busy0, total0 = machine_jiffies()
    await asyncio.sleep(interval)
    busy1, total1 = machine_jiffies()
    return round((busy1 - busy0) / max(total1 - total0, 1), 3)


async def wait_for_quiet(max_wait: float, threshold: float = 0.2) -> float:
    """Wait (up to `max_wait` s) until under `threshold` of the CPUs are busy; returns the last reading (one
    reading over a second is taken even when `max_wait` is 0)."""
    started = time.monotonic()
    busy = await machine_busy(1.0)
    said = -math.inf
    while busy > threshold and time.monotonic() - started < max_wait:
        if time.monotonic() - said >= 30:
            print(f"  machine {busy:.0%} busy, waiting up to {max_wait - (time.monotonic() - started):.0f} s "
                  "for it to quiet down ...", flush=True)
            said = time.monotonic()
        busy = await machine_busy(2.0)
    return busy


# -- this process ---------------------------------------------------------------------------------
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


# -- processes, from /proc ------------------------------------------------------------------------
def proc_cpu_seconds(pid: int | str) -> tuple[float, float]:
    """(own CPU s, waited-for children's CPU s) of a process (`"self"` for this one); zeros once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def thread_cpu_seconds(tid: int) -> float:
    """CPU time of one thread of this process."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _status_kib(pid: int | str, key: bytes, file: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{file}", "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0  # a process that has exited (or a zombie) holds no resident memory


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (0 once it is gone)."""
    return _status_kib(pid, b"VmRSS:")


def pss_kib(pid: int) -> int:
    """Proportional set size (shared pages divided among their users), in KiB."""
    return _status_kib(pid, b"Pss:", "smaps_rollup")


def vm_hwm_kib() -> int:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it is not inherited across exec."""
    return _status_kib("self", b"VmHWM:")


def children_map() -> dict[int, list[int]]:
    """ppid -> child pids, from one pass over /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, root first."""
    children = children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclass
class TreeMemorySampler:
    """Samples the summed VmRSS (and PSS) of `root` and all its descendants every `interval` seconds.

    RSS sums count pages shared between processes (libraries, copy-on-write) once per process: an upper
    bound. PSS divides shared pages among their users: the tree's true share of RAM.
    """

    root: int
    interval: float = 0.05
    exclude_root: bool = False
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_processes: int = 0
    samples: int = 0
    peak_breakdown: dict[str, int] = field(default_factory=dict)  # comm -> KiB at the RSS peak
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, RSS KiB)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def sample(self) -> None:
        pids = process_tree(self.root)
        if self.exclude_root:
            pids = pids[1:]
        rss = {pid: rss_kib(pid) for pid in pids}
        total = sum(rss.values())
        pss = sum(pss_kib(pid) for pid in pids)
        self.samples += 1
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_processes = max(self.peak_processes, sum(1 for v in rss.values() if v))
        if total > self.peak_rss_kib:
            self.peak_rss_kib = total
            breakdown: dict[str, int] = {}
            for pid, kib in rss.items():
                if kib:
                    name = comm(pid) if pid != self.root else f"{comm(pid)} (root)"
                    breakdown[name] = breakdown.get(name, 0) + kib
            self.peak_breakdown = dict(sorted(breakdown.items(), key=lambda kv: -kv[1]))
        if not self.timeline or time.monotonic() - self._started - self.timeline[-1][0] >= 1.0:
            self.timeline.append((round(time.monotonic() - self._started, 2), total))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> TreeMemorySampler:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def figures(self) -> dict[str, Any]:
        return {"peak_rss_mib": round(self.peak_rss_kib / 1024, 1), "peak_pss_mib": round(self.peak_pss_kib / 1024, 1),
                "samples": self.samples, "interval_s": self.interval, "peak_processes": self.peak_processes,
                "rss_breakdown_at_peak_mib": {k: round(v / 1024, 1) for k, v in self.peak_breakdown.items()}}


class CpuSampler:
    """System-wide busy cores over time, split by who used them (psutil, every `interval` seconds).

    Classes: the root process itself (for `running_service`, the service's event loop); the root's
    subprocesses (espeak-ng, ffmpeg, apertium started from the event loop); the Python processes below the
    root (the process pool: Whisper, numpy); their subprocesses (ffmpeg); PostgreSQL backends serving
    `db_name`; and everything else on the machine ("foreign"). Averages over windows shorter than a few
    sampling intervals are not attributed.
    """

    CLASSES = ("service", "service_children", "pool", "pool_children", "postgres", "foreign")

    def __init__(self, interval: float = 0.5, root: int | None = None, db_name: str | None = None) -> None:
        import psutil

        self._psutil = psutil
        self.root = root or os.getpid()
        self.db_name = db_name
        self.interval = interval
        # (wall time, system busy cpu-seconds so far, {class: cpu-seconds so far})
        self.points: list[tuple[float, float, dict[str, float]]] = []
        self._totals = dict.fromkeys(self.CLASSES[:-1], 0.0)
        self._last: dict[int, tuple[float, float, int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _point(self) -> None:
        """Add the CPU time used since the last sample to each class.

        Live processes of the tree count their own time as it is used; a process that ended since the last
        sample shows up in its parent's children-time when reaped, so the parent's children-time growth
        minus what its vanished children were already seen to use is the part not counted yet (short-lived
        espeak-ng/ffmpeg runs that started and ended between two samples).
        """
        t = self._psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        children = children_map()
        tree: dict[int, str] = {}  # pid -> class of its own time
        stack = [(self.root, "service")]
        while stack:
            pid, cls = stack.pop()
            tree[pid] = cls
            for child in children.get(pid, ()):
                if comm(child).startswith("python"):
                    stack.append((child, "pool"))
                else:
                    stack.append((child, "service_children" if cls in ("service", "service_children")
                                  else "pool_children"))
        now: dict[int, tuple[float, float, int, str]] = {}  # pid -> (own, children, ppid, class)
        for pid, cls in tree.items():
            with contextlib.suppress(self._psutil.Error):
                proc = self._psutil.Process(pid)
                c = proc.cpu_times()
                now[pid] = (c.user + c.system, c.children_user + c.children_system, proc.ppid(), cls)
        if self.db_name:
            for proc in self._psutil.process_iter(["name"]):
                with contextlib.suppress(self._psutil.Error):
                    if proc.info["name"].startswith("postgres") and self.db_name in " ".join(proc.cmdline()):
                        c = proc.cpu_times()
                        now[proc.pid] = (c.user + c.system, 0.0, 0, "postgres")
        if self._last:
            vanished: dict[int, float] = {}  # parent pid -> total last seen of its children that ended
            for pid, (own, kids, ppid, _) in self._last.items():
                if pid not in now:
                    vanished[ppid] = vanished.get(ppid, 0.0) + own + kids
            for pid, (own, kids, _, cls) in now.items():
                before = self._last.get(pid)
                if before is None:
                    self._totals[cls] += own  # born since the last sample
                    continue
                self._totals[cls] += max(0.0, own - before[0])
                reaped = max(0.0, kids - before[1] - vanished.get(pid, 0.0))
                if reaped:
                    kid_cls = {"service": "service_children", "pool": "pool_children"}.get(cls, cls)
                    self._totals[kid_cls] += reaped
        self._last = now
        self.points.append((time.time(), sum(t) - idle, dict(self._totals)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._point()
            self._stop.wait(self.interval)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._point()

    def _window(self, start: float, end: float) -> list[tuple[float, float, dict[str, float]]]:
        inside = [p for p in self.points if start - self.interval / 2 <= p[0] <= end + self.interval / 2]
        return inside if len(inside) >= 2 and inside[-1][0] > inside[0][0] else []

    def busy_cores(self, start: float, end: float) -> float | None:
        """Average number of busy cores (all processes) between two wall-clock times; None if too short."""
        w = self._window(start, end)
        return round((w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0]), 2) if w else None

    def breakdown(self, start: float, end: float) -> dict[str, float] | None:
        """Average cores used by each class between two wall-clock times (see the class doc)."""
        w = self._window(start, end)
        if not w or end - start < 4 * self.interval:  # too short to attribute reaped children reliably
            return None
        span = w[-1][0] - w[0][0]
        out = {k: round((w[-1][2][k] - w[0][2][k]) / span, 2) for k in self.CLASSES[:-1]}
        out["foreign"] = round(max(0.0, (w[-1][1] - w[0][1]) / span - sum(out.values())), 2)
        return out

    def cpu_seconds(self, start: float, end: float) -> dict[str, float] | None:
        """CPU-seconds each class used between two wall-clock times (robust to other load, unlike wall time)."""
        w = self._window(start, end)
        if not w:
            return None
        out = {k: round(w[-1][2][k] - w[0][2][k], 1) for k in self.CLASSES[:-1]}
        out["measured_tree_total"] = round(sum(out.values()), 1)
        return out

    def foreign_cores(self, start: float, end: float) -> float | None:
        """Average cores used by processes we do not attribute to the measured tree or its database."""
        b = self.breakdown(start, end)
        return None if b is None else b["foreign"]
