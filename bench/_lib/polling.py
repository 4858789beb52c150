"""Waiting for the database to say the work is done, without sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time

import asyncpg


async def until_none_left(conn: asyncpg.Connection, sql: str, timeout: float, poll: float = 0.05) -> float:
    """Poll `sql` (a count of what is left) until it is 0; returns the monotonic time it was seen 0."""
    deadline = time.monotonic() + timeout
    while True:
        left = await conn.fetchval(sql)
        now = time.monotonic()
        if left == 0:
            return now
        if now > deadline:
            raise TimeoutError(f"{left} still left after {timeout} s")
        await asyncio.sleep(poll)
