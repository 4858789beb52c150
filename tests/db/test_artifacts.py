"""service/db/artifacts.py on real PostgreSQL: recording an artifact returns the typed `StoredArtifact`; a retried
stage's upload replaces it; a job's list, its job-level ones, and what retention may take."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from service.db import artifacts, connection, jobs
from service.db.artifacts import NewArtifact, StoredArtifact
from service.db.jobs import InputObject, NewJob


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connection.create_pool(database_url, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def job_and_task(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    voice = InputObject("u1/uploads/x/voice.wav", "audio/wav", 100, "0" * 64, 1.0)
    job_id, _ = await jobs.create(pool, NewJob("u1", "en", ["es"], voice, None, None, uuid.uuid4().hex))
    return job_id, await pool.fetchval("SELECT id FROM language_tasks WHERE job_id = $1", job_id)


def master(job_id: uuid.UUID, task_id: uuid.UUID, size: int = 10, sha: str = "a" * 64) -> NewArtifact:
    return NewArtifact(job_id, task_id, "es", "master_wav", f"u1/jobs/{job_id}/es/master.wav", sha, size, "audio/wav")


async def test_a_recorded_artifact_reads_back_typed_with_its_expiry_and_api_shape(pool: asyncpg.Pool) -> None:
    job_id, task_id = await job_and_task(pool)
    stored = await artifacts.record(pool, master(job_id, task_id), timedelta(hours=2))
    assert isinstance(stored, StoredArtifact)
    assert (stored.job_id, stored.task_id, stored.kind, stored.size_bytes, stored.name) == (
        job_id, task_id, "master_wav", 10, "master.wav")
    assert stored.expires_at - stored.created_at == timedelta(hours=2)
    assert await artifacts.for_job(pool, job_id) == [stored]
    shown = stored.to_json()
    assert set(shown) == {"id", "kind", "target_language", "revision", "object_path", "content_type", "size_bytes",
                          "sha256", "created_at", "expires_at"}
    assert shown["id"] == str(stored.id) and shown["expires_at"] == stored.expires_at.isoformat()


async def test_a_retried_upload_replaces_the_row_instead_of_adding_one(pool: asyncpg.Pool) -> None:
    job_id, task_id = await job_and_task(pool)
    first = await artifacts.record(pool, master(job_id, task_id), timedelta(hours=2))
    again = await artifacts.record(pool, master(job_id, task_id, size=20, sha="b" * 64), timedelta(hours=2))
    assert again.id == first.id and (again.size_bytes, again.sha256) == (20, "b" * 64)
    assert [a.size_bytes for a in await artifacts.for_job(pool, job_id)] == [20]


async def test_job_level_artifacts_are_the_job_s_own(pool: asyncpg.Pool) -> None:
    job_id, task_id = await job_and_task(pool)
    await artifacts.record(pool, master(job_id, task_id), timedelta(hours=2))
    transcript = await artifacts.record(pool, NewArtifact(job_id, None, None, "transcript_json",
                                                          f"u1/jobs/{job_id}/source/transcript.json", "c" * 64, 5,
                                                          "application/json"), timedelta(hours=2))
    assert await artifacts.job_level(pool, job_id) == [transcript]
    assert [a.kind for a in await artifacts.for_job(pool, job_id)] == ["transcript_json", "master_wav"]


async def test_expired_artifacts_are_due_and_leave_the_job_s_list_once_removed(pool: asyncpg.Pool) -> None:
    job_id, task_id = await job_and_task(pool)
    await artifacts.record(pool, master(job_id, task_id, size=7), timedelta(hours=1))
    assert await artifacts.due(pool) == (0, 0)
    await pool.execute("UPDATE artifacts SET created_at = created_at - interval '2 hours', "
                       "expires_at = expires_at - interval '2 hours'")  # two hours later
    assert await artifacts.for_job(pool, job_id) == []  # expired: no longer offered
    assert await artifacts.due(pool) == (1, 7)
    async with artifacts.to_remove(pool, 10) as batch:
        assert [a.size_bytes for a in batch] == [7]
    assert await artifacts.due(pool) == (0, 0)
