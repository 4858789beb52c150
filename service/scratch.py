"""Scratch space: where a task's intermediate files live, how partial files are named, and cleaning up.

`DATA_DIR/scratch/<job>/<language>/` holds a task's work between its stages and attempts (clips, the
voice track, the outputs each stage hands on); `DATA_DIR/scratch/<job>/source/` the job's own (its
transcript files). A file being written is a *partial* beside its target, named with the writing
process's id, and renamed into place when whole; partials left by a process that died (kill -9, a
power cut) are removed at the next start. A task's scratch goes when the task fails or is cancelled, the job's
when the job ends with nothing complete: the results are in storage by then. A complete language keeps its clips
and the stages' records (`keep_checkpoints`) until its artifacts expire, so a re-render after an edit speaks only
what changed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

_PARTIAL = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.part$")
_STALE_SECONDS = 3600.0  # partials without a process id in their name (older versions): gone after an hour


def partial_path(out_path: str) -> str:
    """A sibling name to write `out_path` under until it is whole."""
    directory, name = os.path.split(out_path)
    return os.path.join(directory, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")


def job_dir(root: Path, job_id: object) -> Path:
    return root / str(job_id)


def source_dir(root: Path, job_id: object) -> Path:
    """The job's own files, shared by its languages: its transcript, its background at the working rate."""
    return root / str(job_id) / "source"


def task_dir(root: Path, job_id: object, language: str) -> Path:
    return root / str(job_id) / language


def remove(path: Path) -> None:
    """Blocking: call from a thread."""
    shutil.rmtree(path, ignore_errors=True)


def keep_checkpoints(folder: Path) -> None:
    """Blocking: call from a thread. A finished language's scratch without its rendered files (in storage by
    now): the clips, their records and the stages' outputs (*.json) stay for a re-render."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and path.suffix != ".json":
            path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs. A zombie (state Z: it has exited, its parent has not reaped it yet) does not:
    after a `kill -9` a process stays one until its parent (often PID 1, slowly) collects it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or it went away since
        return False
    return stat[stat.rfind(")") + 2:][:1] == "Z"


def sweep_partials(root: Path) -> list[Path]:
    """Remove partial files whose writer is gone; blocking, call from a thread. Returns what went."""
    removed: list[Path] = []
    if not root.exists():
        return removed
    now = time.time()
    for path in root.rglob(".*.part"):
        match = _PARTIAL.match(path.name)
        if match:
            dead = int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1)))
        else:
            try:
                dead = now - path.stat().st_mtime > _STALE_SECONDS
            except FileNotFoundError:
                continue
        if dead:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
