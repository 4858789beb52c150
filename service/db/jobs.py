"""The `jobs` table: creating a job with its tasks, reading it back, its status, cancelling and deleting it.

Every query takes the owner: a job that is not the caller's (or that its owner deleted) does not exist for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from service.db import artifacts, events, tasks, uploads
from service.domain import FINISHED
from service.errors import IdempotencyConflict


@dataclass(frozen=True)
class InputObject:
    object_path: str
    content_type: str
    size_bytes: int
    sha256: str
    duration_seconds: float
    filename: str | None = None  # as the uploader's computer named it

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "duration_seconds": round(self.duration_seconds, 3)}


@dataclass(frozen=True)
class MediaSpec:
    """A media job (sql/030 `jobs.media`): its `voice` input is one mixed recording, maybe with a picture, that the
    service separates itself; the dubbed window, what to do with the background, and what the probe found."""

    has_video: bool
    container: str | None  # mp4 | mov | webm | mkv, when there is a picture
    start_seconds: float
    end_seconds: float
    background: str  # keep | drop
    video: dict[str, Any] | None = None  # codec, width, height, frames, frame_rate
    audio_codec: str = ""  # the upload's soundtrack: copied as it is into the dubbed video where it may be

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What the API shows (`MediaOptions`)."""
        return {"has_video": self.has_video, "container": self.container, "start_seconds": self.start_seconds,
                "end_seconds": self.end_seconds, "background": self.background}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MediaSpec:
        return cls(bool(data["has_video"]), data.get("container"), float(data["start_seconds"]),
                   float(data["end_seconds"]), str(data["background"]), data.get("video"),
                   str(data.get("audio_codec", "")))


@dataclass(frozen=True)
class NewJob:
    owner_id: str
    source_language: str
    target_languages: list[str]
    voice: InputObject
    background: InputObject | None
    idempotency_key: str | None
    request_hash: str
    media: MediaSpec | None = None
    offline_voice: str = "auto"  # natural | fast | auto (sql/038)


_JOB_COLUMNS = """id, owner_id, status, source_language, detected_language, detected_language_confidence, offline_voice,
    created_at, updated_at,
    voice_path, voice_content_type, voice_size_bytes, voice_sha256, voice_duration_seconds,
    background_path, background_content_type, background_size_bytes, background_sha256,
    background_duration_seconds, inputs_deleted_at, voice_filename, background_filename, media"""
_FINISHED_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(FINISHED)) + ")"


# A creation that loses a deadlock or a serialization conflict did nothing; it is run again this many times.
_CREATE_ATTEMPTS = 3


async def create(pool: asyncpg.Pool, job: NewJob) -> tuple[UUID, bool]:
    """Insert the job and one task per language in one transaction. Returns (id, created)."""
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            return await _create_once(pool, job)
        except (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError):
            if attempt == _CREATE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _create_once(pool: asyncpg.Pool, job: NewJob) -> tuple[UUID, bool]:
    bg = job.background
    async with pool.acquire() as conn, conn.transaction():
        job_id = await conn.fetchval(
            """INSERT INTO jobs (owner_id, source_language, voice_path, voice_content_type,
                   voice_size_bytes, voice_sha256, voice_duration_seconds, background_path,
                   background_content_type, background_size_bytes, background_sha256,
                   background_duration_seconds, idempotency_key, request_hash, voice_filename,
                   background_filename, offline_voice, media)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
               ON CONFLICT ON CONSTRAINT idempotency_unique DO NOTHING
               RETURNING id""",
            job.owner_id,
            job.source_language,
            job.voice.object_path,
            job.voice.content_type,
            job.voice.size_bytes,
            job.voice.sha256,
            job.voice.duration_seconds,
            bg.object_path if bg else None,
            bg.content_type if bg else None,
            bg.size_bytes if bg else None,
            bg.sha256 if bg else None,
            bg.duration_seconds if bg else None,
            job.idempotency_key,
            job.request_hash,
            job.voice.filename,
            bg.filename if bg else None,
            job.offline_voice,
            job.media.to_json() if job.media else None,
        )
        if job_id is None:
            assert job.idempotency_key is not None
            existing = await by_idempotency_key(conn, job.owner_id, job.idempotency_key, job.request_hash)
            assert existing is not None
            return existing, False
        await uploads.mark_used(conn, job_id, [job.voice.object_path] + ([bg.object_path] if bg else []))
        queued = await tasks.insert_for_job(conn, job_id, job.target_languages)
        await events.append(conn, job_id, queued)
        await events.notify_tasks_ready(conn)
        return job_id, True


async def by_idempotency_key(conn: asyncpg.Pool | asyncpg.Connection, owner_id: str, key: str,
                             request_hash: str) -> UUID | None:
    """The job an earlier request with this key made; IdempotencyConflict if that request was another."""
    existing = await conn.fetchrow(
        "SELECT id, request_hash FROM jobs WHERE owner_id = $1 AND idempotency_key = $2", owner_id, key
    )
    if existing is None:
        return None
    if existing["request_hash"] != request_hash:
        raise IdempotencyConflict()
    return UUID(str(existing["id"]))


async def finished_among(pool: asyncpg.Pool, job_ids: list[str]) -> list[str]:
    """Of these job ids, those that are over or deleted (their scratch can go: results are in storage)."""
    rows = await pool.fetch(
        f"""SELECT j.id::text AS id FROM jobs j
            WHERE j.id::text = ANY($1::text[]) AND (j.status IN {_FINISHED_SQL} OR j.deleted_at IS NOT NULL)""",
        job_ids,
    )
    return [r["id"] for r in rows]


def _cancelled_count(appended: list[dict[str, Any]]) -> int:
    return sum(1 for event in appended if event["kind"] == "stage")


async def cancel(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> int | None:
    """Cancel every unfinished task (sql/010 `cancel_job`, which `ops.cancel_job` calls too). Returns how many
    were cancelled, or None when the job is not the caller's."""
    appended = await pool.fetchval("SELECT cancel_job($1, $2)", job_id, owner_id)
    return None if appended is None else _cancelled_count(appended)


@dataclass(frozen=True)
class Deletion:
    cancelled_tasks: int
    deleted_at: datetime


async def delete(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> Deletion | None:
    """The owner deletes the job: its unfinished tasks are cancelled (events, NOTIFY) and the row is marked, so it
    no longer exists for them; it stays for operators. Its idempotency key is freed. None: not the caller's."""
    async with pool.acquire() as conn, conn.transaction():
        appended = await conn.fetchval("SELECT cancel_job($1, $2)", job_id, owner_id)
        if appended is None:
            return None
        deleted_at = await conn.fetchval(
            "UPDATE jobs SET deleted_at = now(), idempotency_key = NULL, updated_at = now() WHERE id = $1 "
            "RETURNING deleted_at", job_id)
        return Deletion(_cancelled_count(appended), deleted_at)


async def record_detection(pool: asyncpg.Pool, job_id: UUID, language: str, confidence: float | None) -> None:
    """The language the recogniser heard in the voice recording (sql/022)."""
    await pool.execute(
        "UPDATE jobs SET detected_language = $2, detected_language_confidence = $3, updated_at = now() WHERE id = $1",
        job_id, language, None if confidence is None else min(max(confidence, 0.0), 1.0))


async def owned(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> bool:
    return bool(
        await pool.fetchval("SELECT true FROM jobs WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
                            job_id, owner_id)
    )


async def voice_filename(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> tuple[bool, str | None]:
    """(whether the job is the caller's, the name its voice was uploaded with): downloads are named after it."""
    row = await pool.fetchrow("SELECT voice_filename FROM jobs WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
                              job_id, owner_id)
    return (row is not None, row["voice_filename"] if row else None)


@dataclass(frozen=True)
class StoredJob:
    """A job as its row holds it: whose it is, where it stands, and the inputs it was made from."""

    id: UUID
    owner_id: str
    status: str
    source_language: str
    created_at: datetime
    updated_at: datetime
    voice: InputObject
    background: InputObject | None
    inputs_deleted_at: datetime | None  # when retention (or the owner) removed the input objects
    detected_language: str | None = None  # what the recogniser heard (sql/022), once transcription ran
    detected_language_confidence: float | None = None
    media: MediaSpec | None = None  # a media job: `voice` is the uploaded mixed recording (sql/030)
    offline_voice: str = "auto"  # what the job asked for: natural | fast | auto (sql/038)

    def input(self, kind: str) -> InputObject:
        """The `voice` or `background` input; ValueError for a job made without that one."""
        media = self.voice if self.media else None
        found = {"voice": self.voice, "background": self.background, "media": media}[kind]
        if found is None:
            raise ValueError(f"the job has no {kind} input")
        return found

    def to_json(self) -> dict[str, Any]:
        """The job's summary as the API shows it (`Job` in routes/models.py, without tasks and artifacts)."""
        detected = None if self.detected_language is None else {
            "code": self.detected_language,
            "confidence": None if self.detected_language_confidence is None
            else round(self.detected_language_confidence, 4)}
        return {"id": str(self.id), "status": self.status, "source_language": self.source_language,
                "detected_language": detected, "offline_voice": self.offline_voice,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "inputs": {"voice": self._input_json(self.voice), "background": self._input_json(self.background)},
                "media": self.media.public() if self.media else None}

    def _input_json(self, stored: InputObject | None) -> dict[str, Any] | None:
        if stored is None:
            return None
        deleted_at = self.inputs_deleted_at.isoformat() if self.inputs_deleted_at else None
        return {**stored.to_json(), "deleted_at": deleted_at}


def _input_of(row: asyncpg.Record, prefix: str) -> InputObject | None:
    if row[f"{prefix}_path"] is None:
        return None
    return InputObject(object_path=row[f"{prefix}_path"], content_type=row[f"{prefix}_content_type"],
                       size_bytes=row[f"{prefix}_size_bytes"], sha256=row[f"{prefix}_sha256"],
                       duration_seconds=float(row[f"{prefix}_duration_seconds"]),
                       filename=row[f"{prefix}_filename"])


def _stored_job(row: asyncpg.Record) -> StoredJob:
    voice = _input_of(row, "voice")
    assert voice is not None  # the column is NOT NULL
    return StoredJob(id=row["id"], owner_id=row["owner_id"], status=row["status"],
                     source_language=row["source_language"], created_at=row["created_at"],
                     updated_at=row["updated_at"], voice=voice, background=_input_of(row, "background"),
                     inputs_deleted_at=row["inputs_deleted_at"], detected_language=row["detected_language"],
                     detected_language_confidence=None if row["detected_language_confidence"] is None
                     else float(row["detected_language_confidence"]), offline_voice=row["offline_voice"],
                     media=MediaSpec.from_json(dict(row["media"])) if row["media"] is not None else None)


@dataclass(frozen=True)
class JobView:
    """A job with its tasks and (when read one by one) its artifacts: what `/v1/jobs` answers."""

    job: StoredJob
    tasks: list[tasks.TaskView]
    artifacts: list[artifacts.StoredArtifact] | None = None

    def to_json(self) -> dict[str, Any]:
        shown = {**self.job.to_json(), "tasks": [t.to_json() for t in self.tasks]}
        if self.artifacts is not None:
            shown["artifacts"] = [a.to_json() for a in self.artifacts]
        return shown


async def by_id(pool: asyncpg.Pool | asyncpg.Connection, job_id: UUID) -> StoredJob | None:
    """A job by id, for the supervisor (which works on behalf of every owner)."""
    row = await pool.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
    return None if row is None else _stored_job(row)


async def representation(pool: asyncpg.Pool, owner_id: str, job_id: UUID) -> JobView | None:
    """The job as the API shows it: inputs, tasks and artifacts."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
            job_id, owner_id,
        )
        if row is None:
            return None
        return JobView(_stored_job(row), await tasks.for_job(conn, job_id), await artifacts.for_job(conn, job_id))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    """Where the next page starts: the last job's creation time (microseconds since 1970) and id, as
    `<micros>_<uuid>` (the OpenAPI document's pattern: every string of that form is a valid cursor)."""
    return f"{(created_at - _EPOCH) // _MICROSECOND}_{job_id}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Raises ValueError on anything that is not of a cursor's form."""
    micros, _, job_id = cursor.partition("_")
    if not micros.isdigit() or len(micros) > 16:
        raise ValueError("not a cursor")
    return _EPOCH + int(micros) * _MICROSECOND, UUID(job_id)


async def list_for_owner(
    pool: asyncpg.Pool, owner_id: str, limit: int, cursor: str | None
) -> tuple[list[JobView], str | None]:
    """The owner's jobs, newest first, keyset-paginated on (created_at, id)."""
    if cursor:
        created, last_id = decode_cursor(cursor)
        rows = await pool.fetch(
            f"""SELECT {_JOB_COLUMNS} FROM jobs
                WHERE owner_id = $1 AND deleted_at IS NULL AND (created_at, id) < ($2, $3)
                ORDER BY created_at DESC, id DESC LIMIT $4""",
            owner_id,
            created,
            last_id,
            limit + 1,
        )
    else:
        rows = await pool.fetch(
            f"""SELECT {_JOB_COLUMNS} FROM jobs WHERE owner_id = $1 AND deleted_at IS NULL
                ORDER BY created_at DESC, id DESC LIMIT $2""",
            owner_id,
            limit + 1,
        )
    page = rows[:limit]
    job_ids = [r["id"] for r in page]
    task_rows = await pool.fetch(
        f"""SELECT job_id, {tasks.PUBLIC_COLUMNS}
           FROM language_tasks WHERE job_id = ANY($1::uuid[]) ORDER BY target_language""",
        job_ids,
    )
    by_job: dict[UUID, list[tasks.TaskView]] = {}
    for t in task_rows:
        by_job.setdefault(t["job_id"], []).append(tasks.TaskView.from_row(t))
    result = [JobView(_stored_job(r), by_job.get(r["id"], [])) for r in page]
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return result, next_cursor


# -- retention: the inputs of finished and deleted jobs -----------------------------------------------

@dataclass(frozen=True)
class InputsToRemove:
    """Jobs whose inputs go now. `paths` are the objects no other job still needs (delete them); `kept` are
    objects another job still uses (the same upload dubbed again), left for that job's own turn."""

    job_ids: list[UUID]
    paths: list[str]
    kept: list[str]
    bytes: int


# A job's inputs are due when its owner deleted it, or when it finished more than $1 hours ago.
_INPUTS_DUE = f"""j.inputs_deleted_at IS NULL AND (
        j.deleted_at IS NOT NULL
        OR (j.status IN {_FINISHED_SQL}
            AND (SELECT max(t.finished_at) FROM language_tasks t WHERE t.job_id = j.id)
                < now() - make_interval(hours => $1)))"""

# Keys of the transaction-scoped advisory locks on an object path: two runs deciding about the same
# object (two jobs made from one upload) decide one after the other.
_PATH_LOCK_SPACE = 0x696E70


@asynccontextmanager
async def inputs_to_remove(pool: asyncpg.Pool, ttl_hours: float, limit: int,
                           job_id: UUID | None = None) -> AsyncIterator[InputsToRemove]:
    """Up to `limit` jobs whose inputs are due, locked (SKIP LOCKED: a concurrent run takes other jobs), or just
    `job_id`'s (its owner deleted it). The caller deletes `paths` from storage inside the block; when the block
    ends without an error the jobs' inputs, and the uploads they came from, are marked deleted."""
    async with pool.acquire() as conn, conn.transaction():
        if job_id is None:
            rows = await conn.fetch(
                f"""SELECT j.id, j.voice_path, j.voice_size_bytes, j.background_path, j.background_size_bytes
                    FROM jobs j WHERE {_INPUTS_DUE}
                    ORDER BY j.created_at LIMIT $2 FOR UPDATE OF j SKIP LOCKED""",
                ttl_hours, limit)
        else:
            rows = await conn.fetch(
                """SELECT id, voice_path, voice_size_bytes, background_path, background_size_bytes
                   FROM jobs WHERE id = $1 AND inputs_deleted_at IS NULL FOR UPDATE""", job_id)
        sizes: dict[str, int] = {}
        for row in rows:
            sizes[row["voice_path"]] = row["voice_size_bytes"]
            if row["background_path"] is not None:
                sizes[row["background_path"]] = row["background_size_bytes"]
        ids = [row["id"] for row in rows]
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(p)) FROM unnest($2::text[]) AS p ORDER BY p",
            _PATH_LOCK_SPACE, sorted(sizes))
        needed = {r["p"] for r in await conn.fetch(
            """SELECT p FROM unnest($1::text[]) AS p
               WHERE EXISTS (SELECT 1 FROM jobs o WHERE o.inputs_deleted_at IS NULL AND o.voice_path = p
                                                    AND o.id <> ALL($2::uuid[]))
                  OR EXISTS (SELECT 1 FROM jobs o WHERE o.inputs_deleted_at IS NULL AND o.background_path = p
                                                    AND o.id <> ALL($2::uuid[]))""",
            sorted(sizes), ids)}
        paths = sorted(set(sizes) - needed)
        yield InputsToRemove(ids, paths, sorted(needed), sum(sizes[p] for p in paths))
        if ids:
            await conn.execute("UPDATE jobs SET inputs_deleted_at = now() WHERE id = ANY($1::uuid[])", ids)
            await uploads.mark_deleted(conn, paths)


async def inputs_due(pool: asyncpg.Pool, ttl_hours: float) -> tuple[int, int, int]:
    """What `inputs_to_remove` would take now, changing nothing: (jobs, objects, bytes) (`dubbing retention
    --dry-run`)."""
    row = await pool.fetchrow(
        f"""WITH due AS (
                SELECT j.id, j.voice_path, j.voice_size_bytes, j.background_path, j.background_size_bytes
                FROM jobs j WHERE {_INPUTS_DUE}
            ), objects AS (
                SELECT voice_path AS path, voice_size_bytes AS size FROM due
                UNION SELECT background_path, background_size_bytes FROM due WHERE background_path IS NOT NULL
            ), free AS (
                SELECT * FROM objects b
                WHERE NOT EXISTS (SELECT 1 FROM jobs o WHERE o.inputs_deleted_at IS NULL
                                    AND (o.voice_path = b.path OR o.background_path = b.path)
                                    AND o.id NOT IN (SELECT id FROM due))
            )
            SELECT (SELECT count(*) FROM due) AS jobs, (SELECT count(*) FROM free) AS objects,
                   (SELECT coalesce(sum(size), 0) FROM free) AS bytes""",
        ttl_hours)
    assert row is not None
    return int(row["jobs"]), int(row["objects"]), int(row["bytes"])
