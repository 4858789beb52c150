"""The process's database handle: the connection pool and the transition writer that shares it."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from service.db import connection
from service.db.transitions import TransitionWriter


@dataclass(frozen=True)
class Database:
    """What the service holds open: `pool` for queries, `transitions` to group-commit task changes."""

    pool: asyncpg.Pool
    transitions: TransitionWriter

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Database:
        pool = await connection.create_pool(url, min_size=min_size, max_size=max_size)
        return cls(pool, TransitionWriter(pool))

    @classmethod
    def on(cls, pool: asyncpg.Pool) -> Database:
        """A handle on a pool someone else opened and closes (benchmarks, tests)."""
        return cls(pool, TransitionWriter(pool))

    async def close(self) -> None:
        await self.pool.close()
