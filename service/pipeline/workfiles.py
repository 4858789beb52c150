"""A task's intermediate results between stages: small JSON files in its scratch directory."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import anyio


async def write_json(path: Path, data: Any) -> None:
    """Write atomically, so a stage resumed after a crash never reads half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    await anyio.Path(tmp).write_text(json.dumps(data, ensure_ascii=False, indent=1))
    await anyio.to_thread.run_sync(os.replace, tmp, path)


async def read_json(path: Path) -> Any:
    return json.loads(await anyio.Path(path).read_text())
