"""The `task_events` table: an append-only history of every transition, and its NOTIFY.

Each job hands out its own sequence numbers under the job row's lock, so a job's events commit
in sequence order and a client resuming after `seq` N misses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

EVENTS_CHANNEL = "job_events"
TASKS_CHANNEL = "tasks_ready"

def format_time(moment: datetime) -> str:
    """UTC with microseconds, exactly as `append_job_events` (sql/004) writes it into NOTIFYs."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
            at=format_time(created),
        )


_COLUMNS = "job_id, seq, task_id, target_language, kind, stage, progress, data, created_at"


def new_event_json(event: NewEvent) -> dict[str, Any]:
    return {"kind": event.kind, "task_id": str(event.task_id) if event.task_id else None,
            "target_language": event.target_language, "stage": event.stage, "progress": event.progress,
            "data": event.data}


async def append(conn: asyncpg.Connection, job_id: UUID, events: list[NewEvent]) -> list[Event]:
    """Append events for one job and NOTIFY once (sql/004: `append_job_events`). Call inside the
    transition's transaction."""
    if not events:
        return []
    rows = await conn.fetchval("SELECT append_job_events($1, $2::jsonb)", job_id,
                               [new_event_json(e) for e in events])
    return [Event.from_json(r) for r in rows or []]


async def notify_tasks_ready(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_notify($1, '')", TASKS_CHANNEL)


async def since(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID, after_seq: int) -> list[Event]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM task_events WHERE job_id = $1 AND seq > $2 ORDER BY seq",
        job_id,
        after_seq,
    )
    return [Event.from_row(r) for r in rows]
