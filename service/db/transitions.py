"""Group commit for task transitions: the changes that arrive while one batch is being written go
to the database together, in one statement and one commit.

Each change stays atomic (it is one `change_task` call, sql/004); what is shared is the round trip
and the fsync, which is what limits a queue of many small transitions. Within a batch the calls
run in job order, so two processes' batches take job row locks in the same order. One batch is in
flight per pool at a time, so the changes one task makes are applied in the order it made them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

MAX_BATCH = 128

_BATCH_SQL = """
    SELECT b.i, change_task(b.task, b.owner, b.kind, b.stage, b.progress, b.error_code, b.error_message,
                            b.release, b.run_after, b.data) AS events
    FROM (
        SELECT u.* FROM unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::real[], $7::text[],
                               $8::text[], $9::bool[], $10::float8[], $11::jsonb[])
                        AS u(i, task, owner, kind, stage, progress, error_code, error_message, release,
                             run_after, data)
        JOIN language_tasks t ON t.id = u.task
        ORDER BY t.job_id, u.i
    ) AS b
"""


@dataclass(frozen=True)
class Change:
    task_id: UUID
    lease_owner: str
    kind: str
    stage: str | None
    progress: float | None
    error_code: str | None
    error_message: str | None
    release: bool
    run_after_seconds: float | None
    data: dict[str, Any]


class TransitionWriter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._pending: list[tuple[Change, asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def apply(self, change: Change) -> Any:
        """The events `change_task` appended, or None when the caller's lease is gone."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="transition-writer")
        return await future

    async def _run(self) -> None:
        """Write batches until nothing waits, then end (the next change starts a new run)."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._write([c for c, _ in batch])
            except Exception as exc:  # the whole statement failed: every caller hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for index, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(results.get(index))

    async def _write(self, changes: list[Change]) -> dict[int, Any]:
        rows = await self.pool.fetch(
            _BATCH_SQL,
            list(range(len(changes))),
            [c.task_id for c in changes],
            [c.lease_owner for c in changes],
            [c.kind for c in changes],
            [c.stage for c in changes],
            [c.progress for c in changes],
            [c.error_code for c in changes],
            [c.error_message for c in changes],
            [c.release for c in changes],
            [c.run_after_seconds for c in changes],
            [c.data for c in changes],
        )
        return {row["i"]: row["events"] for row in rows}
