"""The `task_events` table: an append-only history of every transition, and its NOTIFY.

Each job hands out its own sequence numbers under the job row's lock, so a job's events commit
in sequence order and a client resuming after `seq` N misses nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

EVENTS_CHANNEL = "job_events"
TASKS_CHANNEL = "tasks_ready"

# NOTIFY payloads are capped at 8000 bytes; past this the listener fetches the rows instead.
_MAX_PAYLOAD = 7000


@dataclass(frozen=True)
class NewEvent:
    kind: str
    task_id: UUID | None = None
    target_language: str | None = None
    stage: str | None = None
    progress: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    job_id: str
    seq: int
    kind: str
    task_id: str | None
    target_language: str | None
    stage: str | None
    progress: float | None
    data: dict[str, Any]
    at: str

    def payload(self) -> dict[str, Any]:
        """What the SSE `data:` line carries."""
        return {
            **self.data,
            "job_id": self.job_id,
            "task_id": self.task_id,
            "target_language": self.target_language,
            "stage": self.stage,
            "progress": self.progress,
            "at": self.at,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "seq": self.seq,
            "kind": self.kind,
            "task_id": self.task_id,
            "target_language": self.target_language,
            "stage": self.stage,
            "progress": self.progress,
            "data": self.data,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(**raw)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Event:
        created: datetime = row["created_at"]
        return cls(
            job_id=str(row["job_id"]),
            seq=int(row["seq"]),
            kind=row["kind"],
            task_id=str(row["task_id"]) if row["task_id"] else None,
            target_language=row["target_language"],
            stage=row["stage"],
            progress=None if row["progress"] is None else round(float(row["progress"]), 4),
            data=row["data"] or {},
            at=created.isoformat(),
        )


_COLUMNS = "job_id, seq, task_id, target_language, kind, stage, progress, data, created_at"


async def append(conn: asyncpg.Connection, job_id: UUID, events: list[NewEvent]) -> list[Event]:
    """Append events for one job and NOTIFY once. Call inside the transition's transaction."""
    if not events:
        return []
    last = await conn.fetchval(
        "UPDATE jobs SET last_event_seq = last_event_seq + $2, updated_at = now() "
        "WHERE id = $1 RETURNING last_event_seq",
        job_id,
        len(events),
    )
    first = int(last) - len(events) + 1
    rows = await conn.fetch(
        f"""INSERT INTO task_events (job_id, seq, task_id, target_language, kind, stage, progress, data)
            SELECT $1, s, t, l, k, st, p, d
            FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::real[],
                        $8::jsonb[]) AS e(s, t, l, k, st, p, d)
            RETURNING {_COLUMNS}""",
        job_id,
        list(range(first, first + len(events))),
        [e.task_id for e in events],
        [e.target_language for e in events],
        [e.kind for e in events],
        [e.stage for e in events],
        [e.progress for e in events],
        [e.data for e in events],
    )
    appended = sorted((Event.from_row(r) for r in rows), key=lambda e: e.seq)
    await notify_events(conn, str(job_id), appended)
    return appended


async def notify_events(conn: asyncpg.Connection, job_id: str, events: list[Event]) -> None:
    payload = json.dumps({"job_id": job_id, "events": [e.to_json() for e in events]})
    if len(payload.encode()) > _MAX_PAYLOAD:
        payload = json.dumps({"job_id": job_id, "refetch": True})
    await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)


async def notify_tasks_ready(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_notify($1, '')", TASKS_CHANNEL)


async def since(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, after_seq: int) -> list[Event]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM task_events WHERE job_id = $1 AND seq > $2 ORDER BY seq",
        job_id,
        after_seq,
    )
    return [Event.from_row(r) for r in rows]
