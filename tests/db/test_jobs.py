"""service/db/jobs.py on real PostgreSQL: making a job with its tasks, reading it back as a typed `StoredJob`,
an owner's list page by page, and the API shape of a `JobView`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from service.db import artifacts, connection, jobs
from service.db.artifacts import NewArtifact
from service.db.jobs import InputObject, JobView, NewJob, StoredJob
from service.errors import IdempotencyConflict

SHA = "a" * 64


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connection.create_pool(database_url, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


def voice(owner: str = "u1") -> InputObject:
    return InputObject(f"{owner}/uploads/{uuid.uuid4()}/voice.wav", "audio/wav", 4096, SHA, 2.3456)


def new_job(owner: str = "u1", targets: tuple[str, ...] = ("es", "fr"), background: bool = False,
            key: str | None = None, request_hash: str = "h1") -> NewJob:
    bed = (InputObject(f"{owner}/uploads/{uuid.uuid4()}/bed.wav", "audio/wav", 2048, "b" * 64, 2.5)
           if background else None)
    return NewJob(owner, "en", list(targets), voice(owner), bed, key, request_hash)


async def test_a_created_job_reads_back_with_its_inputs_and_one_queued_task_per_language(pool: asyncpg.Pool) -> None:
    made = new_job(background=True)
    job_id, created = await jobs.create(pool, made)
    assert created
    stored = await jobs.by_id(pool, job_id)
    assert isinstance(stored, StoredJob)
    assert (stored.id, stored.owner_id, stored.status, stored.source_language) == (job_id, "u1", "queued", "en")
    assert stored.voice == made.voice and stored.background == made.background
    assert stored.input("voice") == made.voice and stored.inputs_deleted_at is None
    view = await jobs.representation(pool, "u1", job_id)
    assert view is not None
    assert [(t.target_language, t.stage, t.attempts) for t in view.tasks] == [("es", "queued", 0), ("fr", "queued", 0)]


async def test_a_job_without_background_says_so_when_asked_for_it(pool: asyncpg.Pool) -> None:
    job_id, _ = await jobs.create(pool, new_job())
    stored = await jobs.by_id(pool, job_id)
    assert stored is not None and stored.background is None
    with pytest.raises(ValueError, match="no background"):
        stored.input("background")


async def test_an_unknown_id_is_none(pool: asyncpg.Pool) -> None:
    assert await jobs.by_id(pool, uuid.uuid4()) is None


async def test_the_same_idempotency_key_returns_the_first_job_and_another_request_conflicts(
        pool: asyncpg.Pool) -> None:
    first, created = await jobs.create(pool, new_job(key="k1", request_hash="same"))
    again, created_again = await jobs.create(pool, new_job(key="k1", request_hash="same"))
    assert created and not created_again and again == first
    assert await pool.fetchval("SELECT count(*) FROM language_tasks WHERE job_id = $1", first) == 2
    with pytest.raises(IdempotencyConflict):
        await jobs.create(pool, new_job(key="k1", request_hash="different"))


async def test_another_owner_s_job_does_not_exist_for_them(pool: asyncpg.Pool) -> None:
    job_id, _ = await jobs.create(pool, new_job(owner="u1"))
    assert await jobs.representation(pool, "u2", job_id) is None
    assert not await jobs.owned(pool, "u2", job_id)
    assert await jobs.cancel(pool, "u2", job_id) is None
    assert await jobs.delete(pool, "u2", job_id) is None
    assert await jobs.list_for_owner(pool, "u2", 10, None) == ([], None)
    assert await jobs.owned(pool, "u1", job_id)


async def test_a_deleted_job_is_gone_for_its_owner(pool: asyncpg.Pool) -> None:
    job_id, _ = await jobs.create(pool, new_job())
    deletion = await jobs.delete(pool, "u1", job_id)
    assert deletion is not None and deletion.cancelled_tasks == 2
    assert await jobs.representation(pool, "u1", job_id) is None
    assert await jobs.list_for_owner(pool, "u1", 10, None) == ([], None)


async def test_list_pages_newest_first_with_a_cursor_until_the_last_page(pool: asyncpg.Pool) -> None:
    made = [(await jobs.create(pool, new_job(targets=("es",))))[0] for _ in range(5)]
    await jobs.create(pool, new_job(owner="u2"))  # never on u1's pages
    seen: list[uuid.UUID] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await jobs.list_for_owner(pool, "u1", 2, cursor)
        pages += 1
        assert len(page) <= 2 and all(isinstance(v, JobView) and v.artifacts is None for v in page)
        assert all([t.target_language for t in v.tasks] == ["es"] for v in page)
        seen += [v.job.id for v in page]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(made))
    created = [(await jobs.by_id(pool, job_id)).created_at for job_id in seen]  # type: ignore[union-attr]
    assert created == sorted(created, reverse=True)


def test_a_cursor_that_is_not_ours_is_a_value_error() -> None:
    job_id = uuid.uuid4()
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert jobs.decode_cursor(jobs.encode_cursor(when, job_id)) == (when, job_id)
    for bad in ("not-a-cursor", "W10", "e30"):
        with pytest.raises(ValueError):
            jobs.decode_cursor(bad)


async def test_representation_is_the_api_s_job_shape(pool: asyncpg.Pool) -> None:
    job_id, _ = await jobs.create(pool, new_job(targets=("es",)))
    task_id = await pool.fetchval("SELECT id FROM language_tasks WHERE job_id = $1", job_id)
    await artifacts.record(pool, NewArtifact(job_id, task_id, "es", "master_wav", f"u1/jobs/{job_id}/es/master.wav",
                                             "c" * 64, 123, "audio/wav"), timedelta(days=7))
    view = await jobs.representation(pool, "u1", job_id)
    assert view is not None
    shown = view.to_json()
    assert set(shown) == {"id", "status", "source_language", "created_at", "updated_at", "inputs", "tasks",
                          "artifacts", "detected_language", "offline_voice", "media"}
    assert shown["media"] is None  # made from a voice, not from media_object
    assert shown["id"] == str(job_id) and shown["status"] == "queued" and shown["detected_language"] is None
    assert shown["inputs"]["background"] is None
    assert shown["inputs"]["voice"]["duration_seconds"] == 2.346  # rounded to the millisecond
    assert shown["inputs"]["voice"]["deleted_at"] is None
    [task] = shown["tasks"]
    assert task["id"] == str(task_id) and task["error"] is None and task["usage"] == {}
    [artifact] = shown["artifacts"]
    assert (artifact["kind"], artifact["target_language"], artifact["size_bytes"]) == ("master_wav", "es", 123)
    # Listed, a job has no artifacts key (they are read one job at a time).
    [listed], _ = await jobs.list_for_owner(pool, "u1", 10, None)
    assert "artifacts" not in listed.to_json() and listed.to_json()["tasks"] == shown["tasks"]
