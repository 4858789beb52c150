"""One way to run an engine's subprocess without blocking the event loop or leaking it on cancel."""

from __future__ import annotations

import asyncio
import contextlib

from service.engines.types import EngineError


async def run(args: list[str], stdin: bytes | None = None, time_limit: float = 120.0) -> bytes:
    """Run `args`, feed `stdin`, return stdout; map every failure to an EngineError."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise EngineError("engine_missing", f"{args[0]} is not installed") from exc
    try:
        async with asyncio.timeout(time_limit):
            out, err = await proc.communicate(stdin)
    except TimeoutError as exc:
        raise EngineError("engine_timeout", f"{args[0]} took longer than {time_limit:g}s") from exc
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave the child behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip()[-500:]
        raise EngineError("engine_failed", f"{args[0]} exited {proc.returncode}: {detail}")
    return out
