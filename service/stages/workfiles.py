"""A task's intermediate files in its scratch directory, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio

from service import scratch


async def write_bytes(path: Path, data: bytes) -> None:
    """Write atomically, so a stage resumed after a crash never reads half a file."""
    tmp = Path(scratch.partial_path(str(path)))
    try:
        await anyio.Path(tmp).write_bytes(data)
        await anyio.to_thread.run_sync(os.replace, tmp, path)
    finally:
        await anyio.Path(tmp).unlink(missing_ok=True)


async def write_json(path: Path, data: Any) -> None:
    await write_bytes(path, json.dumps(data, ensure_ascii=False, indent=1).encode())


async def read_json(path: Path) -> Any:
    return json.loads(await anyio.Path(path).read_text())
