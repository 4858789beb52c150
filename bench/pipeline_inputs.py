"""Shared inputs and helpers for the pipeline benchmarks (pipeline_rtf, mixing_vs_ffmpeg, memory_peak).

Inputs are made on the spot and cached under `BENCH_INPUTS` (default /tmp/dubbing-bench-inputs):

* an English voice: many generated sentences (varied templates, seeded) spoken by espeak-ng through
  `service.sample._speak` (the same voice and level as `service.sample.make_sample`), separated by natural
  pauses (0.3-1.2 s, a longer 1.5-3 s breath every few sentences), mono 48 kHz PCM_16, exactly N seconds;
* a stereo 48 kHz background bed with the formula of `make_sample` (chord x pulse + noise, right channel
  delayed 5 ms), written in blocks so an hour of it needs no more than a few MB of RAM;
* target-language clips: the same sentences translated by the service's Apertium engine and spoken by its
  espeak-ng engine (48 kHz mono, silence-trimmed: exactly what the dubbing stage hands to the mixing stage).

Also: a scratch database, the service in its own process, a process-tree memory sampler, a CPU sampler,
ebur128 measurement and the JSON writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:  # `python bench/x.py` must import `service` and `tests/support.py`
        sys.path.insert(0, str(extra))
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "dubbing-numba-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

RATE = 48000
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INPUTS_DIR = Path(os.environ.get("BENCH_INPUTS", Path(tempfile.gettempdir()) / "dubbing-bench-inputs"))
JWT_SECRET = "bench-pipeline-secret-" + "x" * 40
INPUT_VERSION = 2  # bump when the generators change, so cached inputs are remade

# --------------------------------------------------------------------------------------- sentences
_SUBJECTS = ["The old farmer", "My sister", "The young doctor", "Our teacher", "The small dog", "A tired traveller",
             "The city council", "Every student", "The new manager", "My neighbour", "The children",
             "The engineer", "Her grandfather", "The quiet musician", "A local baker", "The police officer"]
_VERBS = ["opened", "painted", "found", "repaired", "carried", "sold", "cleaned", "described", "bought",
          "visited", "built", "closed", "watched", "borrowed", "moved", "checked"]
_ADJECTIVES = ["red", "heavy", "beautiful", "broken", "strange", "large", "wooden", "famous", "cheap", "quiet",
               "green", "ancient", "modern", "empty", "warm", "dark"]
_NOUNS = ["door", "window", "bicycle", "house", "letter", "table", "garden", "bridge", "car", "book", "machine",
          "boat", "piano", "kitchen", "market", "map"]
_PLACES = ["near the river", "in the morning", "after the storm", "behind the school", "before dinner",
           "in the village", "during the winter", "next to the station", "at the end of the street",
           "on a cold evening", "in the old town", "after work"]
_TOPICS = ["the weather", "the new road", "the price of bread", "the football match", "the summer holiday",
           "the election", "the broken bridge", "the library", "the train timetable", "the festival"]
_TEMPLATES = [
    "{S} {V} the {A} {N} {P}.",
    "{S} {V} the {N}.",
    "Yesterday {s} {V} a {A} {N} and then went home.",
    "Do you know why {s} {V} the {N} {P}?",
    "Nobody expected that {s} would talk about {T} for so long.",
    "{S} said that {T} was more important than the {A} {N}.",
    "We waited for an hour, but {s} never {V} the {N}.",
    "Please tell me about {T}.",
    "{S} {V} a {A} {N}, and everybody was happy {P}.",
    "It is difficult to understand {T} without a good {N}.",
    "Thank you very much.",
    "{S} likes {T} and the {A} {N} {P}.",
]


def sentences(count: int, seed: int = 11) -> list[str]:
    """`count` varied English sentences, deterministic for a seed; consecutive ones never repeat."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        subject = rng.choice(_SUBJECTS)
        text = rng.choice(_TEMPLATES).format(
            S=subject, s=subject[0].lower() + subject[1:], V=rng.choice(_VERBS), A=rng.choice(_ADJECTIVES),
            N=rng.choice(_NOUNS), P=rng.choice(_PLACES), T=rng.choice(_TOPICS))
        if not out or out[-1] != text:
            out.append(text)
    return out


# --------------------------------------------------------------------------------------- the voice
@dataclass(frozen=True)
class VoiceInput:
    path: Path
    seconds: float
    lines: tuple[tuple[float, float, str], ...]  # (start, end, text) of each spoken sentence

    @property
    def speech_seconds(self) -> float:
        return sum(end - start for start, end, _ in self.lines)


def _pauses(rng: random.Random) -> Iterator[float]:
    n = 0
    while True:
        n += 1
        yield rng.uniform(1.5, 3.0) if n % rng.randint(4, 7) == 0 else rng.uniform(0.3, 1.2)


def make_voice(seconds: float, seed: int = 11, folder: Path | None = None) -> VoiceInput:
    """Mono 48 kHz PCM_16 English speech of exactly `seconds` (cached by length and seed)."""
    from service.sample import _speak  # the demo/test sample's own espeak voice, resampling and trimming

    folder = folder or INPUTS_DIR / f"voice_{int(seconds)}s_seed{seed}_v{INPUT_VERSION}"
    meta_path, wav_path = folder / "voice.json", folder / "voice.wav"
    if meta_path.is_file() and wav_path.is_file():
        meta = json.loads(meta_path.read_text())
        return VoiceInput(wav_path, meta["seconds"], tuple(tuple(x) for x in meta["lines"]))
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pauses = _pauses(rng)
    texts = sentences(int(seconds / 2.5) + 20, seed)  # more than enough: a line and its pause last > 2.5 s
    lines: list[tuple[float, float, str]] = []
    total = round(seconds * RATE)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
            sf.SoundFile(str(wav_path) + ".part", "w", RATE, 1, "PCM_16", format="WAV") as out:
        position = round(0.6 * RATE)
        out.write(np.zeros(position, dtype=np.float32))
        clips = pool.map(lambda text: (text, _speak(text, RATE)), texts)
        for text, clip in clips:
            pause = round(next(pauses) * RATE)
            if position + len(clip) + round(0.5 * RATE) > total:
                break
            out.write((0.6 * clip / max(float(np.abs(clip).max()), 1e-6)).astype(np.float32))
            lines.append((round(position / RATE, 4), round((position + len(clip)) / RATE, 4), text))
            position += len(clip)
            gap = min(pause, total - position)
            out.write(np.zeros(gap, dtype=np.float32))
            position += gap
        out.write(np.zeros(total - position, dtype=np.float32))
    os.replace(str(wav_path) + ".part", wav_path)
    meta_path.write_text(json.dumps({"seconds": seconds, "seed": seed, "lines": lines}, indent=1))
    return VoiceInput(wav_path, seconds, tuple(lines))


def make_background(seconds: float, folder: Path | None = None, channels: int = 2) -> Path:
    """Stereo 48 kHz PCM_16 music-like bed (the formula of `make_sample`), written block by block."""
    folder = folder or INPUTS_DIR / f"background_{int(seconds)}s_v{INPUT_VERSION}"
    path = folder / "background.wav"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    total = round(seconds * RATE)
    rng = np.random.default_rng(7)
    delay = 240
    carry = np.zeros(delay, dtype=np.float64)
    block = 10 * RATE
    fmt = "RF64" if total * channels * 2 > 0xFFFF_0000 else "WAV"
    with sf.SoundFile(str(path) + ".part", "w", RATE, channels, "PCM_16", format=fmt) as out:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / RATE
            chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
            pulse = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)
            bed = 0.15 * chord * pulse + 0.01 * rng.standard_normal(n)
            right = np.concatenate([carry, bed])[:n]
            carry = np.concatenate([carry, bed])[n:][-delay:]
            frame = np.stack([bed, right], axis=1) if channels == 2 else bed[:, None]
            out.write(frame.astype(np.float32))
    os.replace(str(path) + ".part", path)
    return path


# --------------------------------------------------------------------------------- target-language clips
@dataclass(frozen=True)
class TargetClips:
    language: str
    clips: tuple[tuple[str, float, str], ...]  # (path, duration, translated text) per voice line, in order


def make_target_clips(voice: VoiceInput, language: str = "es") -> TargetClips:
    """Translate every line (service Apertium engine) and speak it (service espeak-ng engine), re-spoken
    faster when too long for its source span, up to the service's engine-rate limit, as the dubbing stage
    does: these are the clips the mixing stage receives."""
    folder = voice.path.parent / f"clips_{language}"
    meta_path = folder / "clips.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return TargetClips(language, tuple(tuple(c) for c in meta["clips"]))
    folder.mkdir(parents=True, exist_ok=True)

    async def build() -> list[tuple[str, float, str]]:
        from service.audio import fitting
        from service.engines.offline.apertium import ApertiumTranslator
        from service.engines.offline.espeak import EspeakSynthesizer
        from service.settings import Settings

        max_rate = Settings().max_engine_rate
        texts = [text for _, _, text in voice.lines]
        translated = await ApertiumTranslator().translate(texts, "en", language)
        synth = EspeakSynthesizer()
        limit = asyncio.Semaphore(os.cpu_count() or 2)

        async def one(i: int, text: str, span: float) -> tuple[str, float, str]:
            out = str(folder / f"{i:05d}.wav")
            async with limit:
                clip = await synth.synthesize(text, language, out, sample_rate=RATE)
                rate = fitting.choose_rate(clip.duration, span, max_rate)
                if rate > 1.0:
                    clip = await synth.synthesize(text, language, out, rate=rate, sample_rate=RATE)
            return clip.path, clip.duration, text

        return list(await asyncio.gather(*(
            one(i, t, end - start) for i, (t, (start, end, _)) in enumerate(zip(translated, voice.lines,
                                                                                strict=True)))))

    clips = asyncio.run(build())
    meta_path.write_text(json.dumps({"language": language, "clips": clips}, indent=1, ensure_ascii=False))
    return TargetClips(language, tuple(clips))


def placed_clips(voice: VoiceInput, target: TargetClips, total: float) -> list[Any]:
    """Place each clip at its source line as the mixing stage does (cut at the next line's start; no stretch)."""
    from service.audio import fitting
    from service.audio.voice_track import PlacedClip

    timings = fitting.slots_from_segments([(s, e) for s, e, _ in voice.lines], total)
    out = []
    for timing, (path, duration, _) in zip(timings, target.clips, strict=True):
        placement = fitting.place(timing, duration)
        out.append(PlacedClip(path, placement.placed_start, placement.placed_end - placement.placed_start))
    return out


def cycled_placement(target: TargetClips, total: float, seed: int = 5) -> list[Any]:
    """Clips laid end to end with natural pauses, cycling through `target`'s clips, over `total` seconds."""
    from service.audio.voice_track import PlacedClip

    rng = random.Random(seed)
    pauses = _pauses(rng)
    out: list[Any] = []
    position, i = 0.6, 0
    while True:
        path, duration, _ = target.clips[i % len(target.clips)]
        if position + duration + 0.5 > total:
            return out
        out.append(PlacedClip(path, round(position, 4), duration))
        position += duration + next(pauses)
        i += 1


# ------------------------------------------------------------------------------------ measurement
_I = re.compile(r"I:\s+(-?[\d.]+|-inf) LUFS")
_TP = re.compile(r"Peak:\s+(-?[\d.]+|-inf) dBFS")
_LRA = re.compile(r"LRA:\s+(-?[\d.]+) LU")


def ebur128(path: str | Path) -> dict[str, float | None]:
    """Integrated loudness, true peak and LRA of a file, measured by ffmpeg's ebur128 (not the service's code)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0",
                           "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]

    def grab(rx: re.Pattern[str]) -> float | None:
        match = rx.search(summary)
        return None if match is None or match.group(1) == "-inf" else float(match.group(1))

    return {"integrated_lufs": grab(_I), "true_peak_dbtp": grab(_TP), "lra_lu": grab(_LRA)}


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0  # a process that has exited (or a zombie) holds no resident memory


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _children_map() -> dict[int, list[int]]:
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
    children = _children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def _comm(pid: int) -> str:
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

    def _sample(self) -> None:
        pids = process_tree(self.root)
        if self.exclude_root:
            pids = pids[1:]
        rss = {pid: _rss_kib(pid) for pid in pids}
        total = sum(rss.values())
        pss = sum(_pss_kib(pid) for pid in pids)
        self.samples += 1
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_processes = max(self.peak_processes, sum(1 for v in rss.values() if v))
        if total > self.peak_rss_kib:
            self.peak_rss_kib = total
            breakdown: dict[str, int] = {}
            for pid, kib in rss.items():
                if kib:
                    name = _comm(pid) if pid != self.root else f"{_comm(pid)} (root)"
                    breakdown[name] = breakdown.get(name, 0) + kib
            self.peak_breakdown = dict(sorted(breakdown.items(), key=lambda kv: -kv[1]))
        if not self.timeline or time.monotonic() - self._started - self.timeline[-1][0] >= 1.0:
            self.timeline.append((round(time.monotonic() - self._started, 2), total))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._sample()
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
        children = _children_map()
        tree: dict[int, str] = {}  # pid -> class of its own time
        stack = [(self.root, "service")]
        while stack:
            pid, cls = stack.pop()
            tree[pid] = cls
            for child in children.get(pid, ()):
                if _comm(child).startswith("python"):
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


def wait_for_quiet(max_wait: float, threshold: float = 0.3, window: float = 3.0) -> dict[str, float]:
    """Wait (up to `max_wait` s) until the machine's CPUs are nearly idle, so figures are not someone else's."""
    import psutil

    def busy_now() -> float:
        a = psutil.cpu_times()
        time.sleep(window)
        b = psutil.cpu_times()
        idle = (b.idle + getattr(b, "iowait", 0.0)) - (a.idle + getattr(a, "iowait", 0.0))
        return max(0.0, float(sum(b) - sum(a) - idle) / window)

    if max_wait <= 0:
        return {"busy_cores": -1.0, "waited_seconds": 0.0}  # not checked
    started = time.monotonic()
    busy = busy_now()
    while busy > threshold and time.monotonic() - started < max_wait:
        print(f"  waiting for other processes to leave the CPUs idle ({busy:.2f} cores busy)...", flush=True)
        busy = busy_now()
    return {"busy_cores": round(busy, 2), "waited_seconds": round(time.monotonic() - started, 1)}


# ------------------------------------------------------------------------------------ the database
def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A new, migrated database, dropped on exit."""
    import asyncpg

    from service.db import migrations

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(ADMIN_URL, name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()
        yield url
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# ------------------------------------------------------------------------------ jobs through the API
def auth(user: str, secret: str) -> dict[str, str]:
    from service.api.auth import mint

    return {"Authorization": f"Bearer {mint(secret, user)}"}


async def upload_file(client: Any, headers: dict[str, str], path: Path, kind: str) -> str:
    """What a browser does: ask for a signed URL, then PUT the file (streamed from disk) to it."""
    size = path.stat().st_size
    response = await client.post("/v1/uploads", headers=headers, json={"files": [
        {"kind": kind, "filename": path.name, "content_type": "audio/wav", "size_bytes": size}]})
    response.raise_for_status()
    upload = response.json()["uploads"][0]

    async def chunks() -> AsyncIterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    put = await client.put(upload["upload_url"], content=chunks(),
                           headers={"Content-Type": "audio/wav", "Content-Length": str(size)}, timeout=300)
    put.raise_for_status()
    return str(upload["object_path"])


@dataclass
class JobRun:
    job_id: str
    status: str
    submitted_at: float  # time.time() just before POST /v1/jobs
    created_at: float  # time.time() when the POST answered 201
    done_at: float  # time.time() when the SSE `done` event arrived
    tasks: list[dict[str, Any]]

    @property
    def wall_seconds(self) -> float:
        return self.done_at - self.submitted_at


async def run_job(client: Any, headers: dict[str, str], body: dict[str, Any], timeout: float = 3600) -> JobRun:
    """Create a job and read its SSE stream until `done`."""
    submitted = time.time()
    response = await client.post("/v1/jobs", headers=headers, json=body, timeout=600)
    if response.status_code != 201:
        raise RuntimeError(f"job creation failed: {response.status_code} {response.text}")
    created = time.time()
    job = response.json()
    done_at = None
    async with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=headers, timeout=timeout) as stream:
        event = None
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line == "" and event == "done":
                done_at = time.time()
                break
            elif line == "":
                event = None
    if done_at is None:
        raise RuntimeError("the event stream ended without `done`")
    final = (await client.get(f"/v1/jobs/{job['id']}", headers=headers)).json()
    return JobRun(job["id"], final["status"], submitted, created, done_at, final["tasks"])


async def stage_times(pool_or_conn: Any, job_id: str) -> dict[str, Any]:
    """Per task: when each `stage` event was written, and how long each stage lasted (task_events)."""
    rows = await pool_or_conn.fetch(
        "SELECT seq, kind, task_id, target_language, stage, created_at FROM task_events WHERE job_id = $1 "
        "ORDER BY seq", uuid.UUID(job_id))
    per_task: dict[str, dict[str, Any]] = {}
    done_at = None
    for row in rows:
        if row["kind"] == "done":
            done_at = row["created_at"].timestamp()
        if row["kind"] != "stage" or row["target_language"] is None:
            continue
        task = per_task.setdefault(row["target_language"], {"entered": []})
        task["entered"].append((row["stage"], row["created_at"].timestamp()))
    for task in per_task.values():
        entered = task["entered"]
        task["stages"] = {}
        for (stage, at), (_, next_at) in itertools.pairwise(entered):
            task["stages"][stage] = round(task["stages"].get(stage, 0.0) + next_at - at, 3)
        task["windows"] = {stage: (at, next_at) for (stage, at), (_, next_at) in itertools.pairwise(entered)}
    return {"tasks": per_task, "done_at": done_at}


# ------------------------------------------------------------------------- the service as a process
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# `dubbing serve` (service/cli.py) lets uvicorn pick the loop, which is uvloop when installed, and under
# uvloop asyncio subprocesses get socketpairs, not pipes, for stdin/stdout: Apertium's HTML formatter then
# aborts ("Could not detect input stream format") while the wrapper script exits 0 with no output, so every
# translation fails ("apertium returned 0 segments"). Until that is fixed the benchmarks start the same app
# the same way but on the asyncio loop (what tests/support.running_service uses too).
_SERVE = """
import uvicorn
from service.app import create_app
from service.logs import configure
from service.settings import Settings
settings = Settings.from_env()
configure(settings.log_format, settings.log_level)
uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", lifespan="on",
            loop="asyncio")
"""


@contextlib.asynccontextmanager
async def service_process(database_url: str, data_dir: Path, **env: str) -> AsyncIterator[tuple[Any, str]]:
    """The service in its own process, configured from the environment like `dubbing serve` (but on the
    asyncio loop, see `_SERVE`); yields (Popen, base_url)."""
    import httpx

    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir),
                "SUPABASE_JWT_SECRET": JWT_SECRET, "HOST": "127.0.0.1", "PORT": str(port),
                "LOG_LEVEL": "warning", "LOG_FORMAT": "json", **env}
    log_path = data_dir / "service.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", _SERVE], env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"service exited: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"service not ready: {log_path.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
        yield proc, base_url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ------------------------------------------------------------------------------------------ output
def environment() -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT).stdout.splitlines()[0]
        return "?"

    changed = subprocess.run(["git", "status", "--porcelain", "--", "service", "sql"], capture_output=True,
                             text=True, check=False, cwd=ROOT).stdout.split("\n")
    return {"git_commit": version(["git", "rev-parse", "--short", "HEAD"]),
            "service_files_changed_since_commit": [line[3:] for line in changed if line.strip()],
            "python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "ffmpeg": version(["ffmpeg", "-version"]), "espeak_ng": version(["espeak-ng", "--version"]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ------------------------------------------------------------------------- work run in pool workers
def mixing_path(placed: list[Any], total: float, background: str, out_dir: str) -> dict[str, Any]:
    """What the mixing stage runs in a pool worker for a task: build_voice_track, then mix (with background).

    Returns the timings and this worker's own peak RSS (VmHWM, so a peak between two samples still shows).
    """
    from service.audio.mix import MixSettings, mix
    from service.audio.voice_track import build_voice_track

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_voice_track(placed, total, str(out / "voice_track.wav"), RATE)
    built = time.perf_counter()
    result = mix(str(out / "voice_track.wav"), background, str(out / "master.wav"), str(out / "master.mp3"),
                 str(out / "voice_stem.wav"), MixSettings())
    return {"build_seconds": round(built - started, 2), "mix_seconds": round(time.perf_counter() - built, 2),
            "integrated_lufs": result.integrated_lufs, "true_peak_dbtp": result.true_peak_dbtp,
            "worker_peak_rss_mib": round(vm_hwm_kib() / 1024, 1)}


def vm_hwm_kib() -> int:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it is not inherited across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def stt_front_end(path: str) -> dict[str, Any]:
    """The length-dependent part of the stt stage's memory, replayed outside the service.

    `WhisperModel.transcribe` (faster-whisper 1.2, as service/engines/whisper.py calls it: whole file, VAD on)
    first decodes the whole file to a 16 kHz float32 array, runs the VAD over it, concatenates the speech
    chunks, and computes the log-Mel features of all of it in one numpy STFT, before the first token is
    decoded. This runs those same calls (the model's own FeatureExtractor, 80 mels as tiny.en) and reports
    this process's peak RSS (VmHWM) after each step.
    """
    import numpy as np
    from faster_whisper.audio import decode_audio
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    def peak() -> float:
        return round(vm_hwm_kib() / 1024, 1)

    out: dict[str, Any] = {"peak_rss_before_mib": peak()}
    started = time.perf_counter()
    audio = decode_audio(path, sampling_rate=16000)
    out.update(decode_seconds=round(time.perf_counter() - started, 2), peak_rss_after_decode_mib=peak(),
               audio_mib=round(audio.nbytes / 2**20, 1))
    started = time.perf_counter()
    chunks = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=500))
    audio = np.concatenate(collect_chunks(audio, chunks)[0], axis=0)
    out.update(vad_seconds=round(time.perf_counter() - started, 2), peak_rss_after_vad_mib=peak(),
               speech_chunks=len(chunks))
    started = time.perf_counter()
    features = FeatureExtractor(feature_size=80)(audio, chunk_length=30)
    out.update(features_seconds=round(time.perf_counter() - started, 2), peak_rss_after_features_mib=peak(),
               features_mib=round(features.nbytes / 2**20, 1))
    return out


def whisper_transcribe(path: str) -> dict[str, Any]:
    """The stt stage's engine call exactly as the service makes it in a pool worker."""
    from service.engines.offline.whisper import default_model_dir, transcribe_file

    started = time.perf_counter()
    transcript = transcribe_file(str(default_model_dir()), path, "en")
    return {"seconds": round(time.perf_counter() - started, 1), "segments": len(transcript.segments),
            "peak_rss_mib": round(vm_hwm_kib() / 1024, 1)}
