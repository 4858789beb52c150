"""Each language as an editable resource: its segments' texts (`language_segments`), its revision
(`language_tasks.revision`), its finished renders (`language_renders`), and starting a render or a new language.

A segment's text is kept across renders while the source text it was made from stays the same; a hand edit
(`edited`) is kept likewise, and dropped (translated afresh) only when its source changes again. `stale` is what
the next render would redo: the source changed since the text was made, or the text or the timing changed since
the last finished render.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from service.db import events, segments, tasks
from service.db.segments import Edit, SourceSegment
from service.domain import Stage
from service.errors import StaleRevision


@dataclass(frozen=True)
class Kept:
    """A segment's text in one language as the last translation left it."""

    source_text: str
    text: str
    edited: bool


@dataclass(frozen=True)
class LanguageState:
    revision: int
    output_revision: int | None
    stage: str
    segments: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "output_revision": self.output_revision, "stage": self.stage,
                "segments": self.segments}


async def kept(pool: asyncpg.Pool, job_id: UUID, language: str) -> dict[int, Kept]:
    rows = await pool.fetch(
        """SELECT segment_id, source_text, text, edited FROM language_segments
           WHERE job_id = $1 AND target_language = $2""", job_id, language)
    return {r["segment_id"]: Kept(r["source_text"], r["text"], r["edited"]) for r in rows}


async def store(pool: asyncpg.Pool, job_id: UUID, language: str, rows: Sequence[tuple[int, str, str, bool]]) -> None:
    """The translating stage's result, (segment id, source text, text, edited) per segment; rows of segments that
    are gone are removed, what the last render used is left alone."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """DELETE FROM language_segments WHERE job_id = $1 AND target_language = $2
               AND NOT (segment_id = ANY($3::int[]))""", job_id, language, [r[0] for r in rows])
        await conn.executemany(
            """INSERT INTO language_segments (job_id, target_language, segment_id, source_text, text, edited)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (job_id, target_language, segment_id) DO UPDATE SET
                   source_text = EXCLUDED.source_text, text = EXCLUDED.text, edited = EXCLUDED.edited""",
            [(job_id, language, *r) for r in rows])


async def revision_of(pool: asyncpg.Pool, task_id: UUID) -> int:
    return int(await pool.fetchval("SELECT revision FROM language_tasks WHERE id = $1", task_id) or 1)


async def record_render(pool: asyncpg.Pool, job_id: UUID, language: str, revision: int,
                        rendered: Sequence[tuple[int, str, float, float]], cues: list[dict[str, Any]]) -> None:
    """A render finished exporting: what each segment was rendered with (segment id, text, start, end) and the
    caption cues it published."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """UPDATE language_segments SET rendered_text = $4, rendered_start = $5, rendered_end = $6
               WHERE job_id = $1 AND target_language = $2 AND segment_id = $3""",
            [(job_id, language, *r) for r in rendered])
        await conn.execute(
            """INSERT INTO language_renders (job_id, target_language, revision, cues) VALUES ($1, $2, $3, $4)
               ON CONFLICT (job_id, target_language, revision) DO UPDATE SET cues = EXCLUDED.cues,
                   rendered_at = now()""", job_id, language, revision, cues)


async def rendered_cues(pool: asyncpg.Pool, job_id: UUID, language: str) -> tuple[int, list[dict[str, Any]]] | None:
    """The latest finished render's revision and caption cues."""
    row = await pool.fetchrow(
        """SELECT revision, cues FROM language_renders WHERE job_id = $1 AND target_language = $2
           ORDER BY revision DESC LIMIT 1""", job_id, language)
    return None if row is None else (int(row["revision"]), list(row["cues"]))


async def state(pool: asyncpg.Pool, job_id: UUID, language: str) -> LanguageState | None:
    """The language as `GET /v1/jobs/{id}/languages/{lang}` shows it; None when the job has no such language."""
    async with pool.acquire() as conn, conn.transaction():
        task = await conn.fetchrow(
            """SELECT t.revision, t.stage, (SELECT max(revision) FROM language_renders r
                   WHERE r.job_id = t.job_id AND r.target_language = t.target_language) AS output_revision
               FROM language_tasks t WHERE t.job_id = $1 AND t.target_language = $2""", job_id, language)
        if task is None:
            return None
        source = await segments.ensure(conn, job_id)
        rows = {r["segment_id"]: r for r in await conn.fetch(
            "SELECT * FROM language_segments WHERE job_id = $1 AND target_language = $2", job_id, language)}
    shown = []
    for segment in source.segments if source is not None else []:
        row = rows.get(segment.id)
        if row is None:
            shown.append({"id": segment.id, "source_text": segment.text, "text": None, "edited": False,
                          "stale": True})
            continue
        stale = (row["source_text"] != segment.text or row["rendered_text"] != row["text"]
                 or row["rendered_start"] != segment.start or row["rendered_end"] != segment.end)
        shown.append({"id": segment.id, "source_text": segment.text, "text": row["text"], "edited": row["edited"],
                      "stale": stale})
    return LanguageState(int(task["revision"]), task["output_revision"], task["stage"], shown)


async def _lock_language(conn: asyncpg.Connection, job_id: UUID, language: str, expected: int | None) -> int:
    """Lock the job and check the language is idle and at `expected` (when given); returns its revision."""
    await segments.lock_for_edit(conn, job_id, None, language)
    revision = int(await conn.fetchval(
        "SELECT revision FROM language_tasks WHERE job_id = $1 AND target_language = $2", job_id, language))
    if expected is not None and expected != revision:
        raise StaleRevision(revision)
    return revision


async def edit_texts(pool: asyncpg.Pool, job_id: UUID, language: str, expected: int | None, editor: str,
                     texts: dict[int, str], action: str) -> tuple[int, list[int]]:
    """Hand edits of segments' texts in one language; returns (the language's revision, the segments changed).
    Unchanged texts change nothing (and bump nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        revision = await _lock_language(conn, job_id, language, expected)
        source = await segments.ensure(conn, job_id)
        by_id: dict[int, SourceSegment] = {s.id: s for s in source.segments} if source else {}
        rows = {r["segment_id"]: r["text"] for r in await conn.fetch(
            "SELECT segment_id, text FROM language_segments WHERE job_id = $1 AND target_language = $2",
            job_id, language)}
        changed = [(i, t) for i, t in texts.items() if i in by_id and rows.get(i) != t]
        if not changed:
            return revision, []
        revision = int(await conn.fetchval(
            """UPDATE language_tasks SET revision = revision + 1 WHERE job_id = $1 AND target_language = $2
               RETURNING revision""", job_id, language))
        await conn.executemany(
            """INSERT INTO language_segments (job_id, target_language, segment_id, source_text, text, edited)
               VALUES ($1, $2, $3, $4, $5, true)
               ON CONFLICT (job_id, target_language, segment_id) DO UPDATE SET text = EXCLUDED.text,
                   source_text = EXCLUDED.source_text, edited = true""",
            [(job_id, language, i, by_id[i].text, t) for i, t in changed])
        await segments.record_edits(conn, job_id, language, revision, editor,
                                    [Edit(i, action, "text", rows.get(i), t) for i, t in changed])
        return revision, sorted(i for i, _ in changed)


@dataclass(frozen=True)
class RenderStart:
    started: bool  # False: it was rendering already, or nothing changed since the last render
    after_seq: int  # follow the progress stream from here (Last-Event-ID)


async def start_render(pool: asyncpg.Pool, job_id: UUID, language: str) -> RenderStart:
    """Render the language again from its translation on (sql/034 `start_render`); a language already rendering,
    or complete at its latest revision, is left as it is."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        before = int(await conn.fetchval("SELECT last_event_seq FROM jobs WHERE id = $1", job_id))
        row = await conn.fetchrow(
            """SELECT t.stage, t.revision, (SELECT max(revision) FROM language_renders r
                   WHERE r.job_id = t.job_id AND r.target_language = t.target_language) AS output_revision
               FROM language_tasks t WHERE t.job_id = $1 AND t.target_language = $2""", job_id, language)
        if row is None:
            return RenderStart(False, before)
        if row["stage"] == Stage.COMPLETE and row["output_revision"] == row["revision"]:
            return RenderStart(False, before)
        appended = await conn.fetchval("SELECT start_render($1, $2)", job_id, language)
        if appended is not None:
            await events.notify_tasks_ready(conn)
        return RenderStart(appended is not None, before)


async def add_languages(pool: asyncpg.Pool, job_id: UUID, languages: list[str]) -> tuple[list[str], int]:
    """New language tasks for a job (they find its transcript ready: no speech recognition); returns the
    languages it already had among those asked for (nothing is added then) and the stream position to follow."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        before = int(await conn.fetchval("SELECT last_event_seq FROM jobs WHERE id = $1", job_id))
        existing = [r[0] for r in await conn.fetch(
            "SELECT target_language FROM language_tasks WHERE job_id = $1 AND target_language = ANY($2::text[])",
            job_id, languages)]
        if existing:
            return sorted(existing), before
        queued = await tasks.insert_for_job(conn, job_id, languages)
        await events.append(conn, job_id, queued)
        await conn.execute("SELECT refresh_job_status($1)", job_id)
        await events.notify_tasks_ready(conn)
        return [], before


async def keeps_scratch(pool: asyncpg.Pool, job_id: UUID) -> bool:
    """Whether a job's scratch is kept after it ends: a language of it is complete and its artifacts live, so a
    re-render can reuse its clips."""
    return bool(await pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM language_tasks t WHERE t.job_id = $1 AND t.stage = 'complete')
              AND EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = $1 AND a.deleted_at IS NULL
                          AND a.expires_at > now())""", job_id))


async def editable_among(pool: asyncpg.Pool, job_ids: list[str]) -> set[str]:
    """Of these job ids, those whose scratch `keeps_scratch` keeps."""
    rows = await pool.fetch(
        """SELECT j.id::text AS id FROM jobs j WHERE j.id::text = ANY($1::text[]) AND j.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM language_tasks t WHERE t.job_id = j.id AND t.stage = 'complete')
           AND EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id AND a.deleted_at IS NULL
                       AND a.expires_at > now())""", job_ids)
    return {r["id"] for r in rows}
