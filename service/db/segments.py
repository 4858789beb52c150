"""The editable transcript (`transcript_segments`), its revision (`transcripts.revision`) and the edit history
(`segment_edits`).

The recogniser's units are copied into rows the first time anyone looks (`ensure`); from then on the rows are what
every language is dubbed from. Every change runs under the job row's lock (the order every task change takes), is
refused while any of the job's languages renders, checks the revision the editor saw (If-Match), bumps it and the
revision of every language, and writes who changed what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from service.db.tasks import TERMINAL_SQL
from service.errors import EditConflict, EditRefused, StaleRevision


@dataclass(frozen=True)
class SourceSegment:
    id: int
    start: float
    end: float
    speaker: str | None
    text: str
    group: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "start": round(self.start, 3), "end": round(self.end, 3), "speaker": self.speaker,
                "text": self.text}


@dataclass(frozen=True)
class EditableTranscript:
    revision: int
    language: str | None
    segments: list[SourceSegment]

    def to_json(self) -> dict[str, Any]:
        speakers = sorted({s.speaker for s in self.segments if s.speaker})
        return {"revision": self.revision, "language": self.language, "speakers": speakers,
                "segments": [s.to_json() for s in self.segments]}


@dataclass(frozen=True)
class Edit:
    """One changed field of one segment, for `segment_edits`."""

    segment_id: int
    action: str  # edit | split | merge | captions
    field: str  # text | start | end | speaker
    old: object
    new: object


def _speaker_of(unit: dict[str, Any], segments: Sequence[dict[str, Any]]) -> str | None:
    """The unit's own speaker, else that of the recogniser's segment it overlaps most (once speakers exist)."""
    if unit.get("speaker"):
        return str(unit["speaker"])
    best, overlap = None, 0.0
    for segment in segments:
        shared = min(float(segment["end"]), float(unit["end"])) - max(float(segment["start"]), float(unit["start"]))
        if segment.get("speaker") and shared > overlap:
            best, overlap = str(segment["speaker"]), shared
    return best


async def ensure(conn: asyncpg.Connection, job_id: UUID) -> EditableTranscript | None:
    """The job's editable transcript, made from the recogniser's units the first time; None until the
    transcript is ready. Call inside a transaction."""
    row = await conn.fetchrow(
        "SELECT state, revision, language, data FROM transcripts WHERE job_id = $1 FOR UPDATE", job_id)
    if row is None or row["state"] != "ready":
        return None
    revision = row["revision"]
    if revision is None:
        data = dict(row["data"])
        segments = list(data.get("segments") or [])
        rows = [(job_id, int(u["id"]), float(u["start"]), max(float(u["end"]), float(u["start"]) + 0.001),
                 _speaker_of(u, segments), str(u["text"]), int(u.get("group", 0))) for u in data.get("units") or []]
        await conn.executemany(
            """INSERT INTO transcript_segments (job_id, id, start_seconds, end_seconds, speaker, text, group_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""", rows)
        revision = 1
        await conn.execute("UPDATE transcripts SET revision = 1 WHERE job_id = $1", job_id)
    found = await conn.fetch(
        """SELECT id, start_seconds, end_seconds, speaker, text, group_id FROM transcript_segments
           WHERE job_id = $1 ORDER BY start_seconds, id""", job_id)
    return EditableTranscript(int(revision), row["language"], [
        SourceSegment(r["id"], r["start_seconds"], r["end_seconds"], r["speaker"], r["text"], r["group_id"])
        for r in found])


async def load(pool: asyncpg.Pool, job_id: UUID) -> EditableTranscript | None:
    async with pool.acquire() as conn, conn.transaction():
        return await ensure(conn, job_id)


async def lock_for_edit(conn: asyncpg.Connection, job_id: UUID, expected: int | None,
                        language: str | None = None) -> EditableTranscript:
    """Lock the job for an edit: EditConflict (409) while the job (or `language`, when given) renders,
    StaleRevision (412) when `expected` is not the transcript's revision (languages check their own)."""
    await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    busy = await conn.fetchval(
        f"""SELECT string_agg(target_language, ', ' ORDER BY target_language) FROM language_tasks
            WHERE job_id = $1 AND stage NOT IN {TERMINAL_SQL} AND ($2::text IS NULL OR target_language = $2)""",
        job_id, language)
    if busy:
        raise EditConflict(f"The job is rendering ({busy}); edit again when it has finished")
    transcript = await ensure(conn, job_id)
    if transcript is None:
        raise EditRefused("The transcript is not ready yet")
    if language is None and expected is not None and expected != transcript.revision:
        raise StaleRevision(transcript.revision)
    return transcript


async def record_edits(conn: asyncpg.Connection, job_id: UUID, language: str | None, revision: int, editor: str,
                       edits: Sequence[Edit]) -> None:
    await conn.executemany(
        """INSERT INTO segment_edits (job_id, segment_id, target_language, revision, editor, action, field,
                                      old_value, new_value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [(job_id, e.segment_id, language, revision, editor, e.action, e.field,
          None if e.old is None else str(e.old), None if e.new is None else str(e.new)) for e in edits])


async def _bump(conn: asyncpg.Connection, job_id: UUID) -> int:
    """One more transcript revision, and one more revision for every language (what they would render changed)."""
    revision = int(await conn.fetchval(
        "UPDATE transcripts SET revision = revision + 1, updated_at = now() WHERE job_id = $1 RETURNING revision",
        job_id))
    await conn.execute("UPDATE language_tasks SET revision = revision + 1 WHERE job_id = $1", job_id)
    return revision


async def apply(conn: asyncpg.Connection, job_id: UUID, editor: str, upserts: Sequence[SourceSegment],
                removed: Sequence[int], edits: Sequence[Edit]) -> int:
    """Write changed and new segments, remove merged ones, bump the revisions and record the history (inside
    the transaction `lock_for_edit` began). Returns the new transcript revision."""
    revision = await _bump(conn, job_id)
    await conn.executemany(
        """INSERT INTO transcript_segments (job_id, id, start_seconds, end_seconds, speaker, text, group_id,
                                            changed_at_revision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (job_id, id) DO UPDATE SET start_seconds = EXCLUDED.start_seconds,
               end_seconds = EXCLUDED.end_seconds, speaker = EXCLUDED.speaker, text = EXCLUDED.text,
               group_id = EXCLUDED.group_id, changed_at_revision = EXCLUDED.changed_at_revision""",
        [(job_id, s.id, s.start, s.end, s.speaker, s.text, s.group, revision) for s in upserts])
    if removed:
        await conn.execute("DELETE FROM transcript_segments WHERE job_id = $1 AND id = ANY($2::int[])",
                           job_id, list(removed))
        await conn.execute("DELETE FROM language_segments WHERE job_id = $1 AND segment_id = ANY($2::int[])",
                           job_id, list(removed))
    await record_edits(conn, job_id, None, revision, editor, edits)
    return revision


async def next_id(conn: asyncpg.Connection, job_id: UUID) -> int:
    """A segment id never used in this job (nor in its edit history): for the second half of a split."""
    return int(await conn.fetchval(
        """SELECT 1 + greatest((SELECT max(id) FROM transcript_segments WHERE job_id = $1),
                               (SELECT max(segment_id) FROM segment_edits WHERE job_id = $1), -1)""", job_id))


@dataclass(frozen=True)
class HistoryEntry:
    segment_id: int
    target_language: str | None
    revision: int
    editor: str
    action: str
    field: str
    old: str | None
    new: str | None
    at: str

    def to_json(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "target_language": self.target_language, "revision": self.revision,
                "editor": self.editor, "action": self.action, "field": self.field, "old": self.old,
                "new": self.new, "at": self.at}


async def history(pool: asyncpg.Pool, job_id: UUID, segment_id: int) -> list[HistoryEntry]:
    """Every edit of one segment (source and translations), oldest first."""
    rows = await pool.fetch(
        """SELECT segment_id, target_language, revision, editor, action, field, old_value, new_value, edited_at
           FROM segment_edits WHERE job_id = $1 AND segment_id = $2 ORDER BY edited_at, id""", job_id, segment_id)
    return [HistoryEntry(r["segment_id"], r["target_language"], r["revision"], r["editor"], r["action"],
                         r["field"], r["old_value"], r["new_value"], r["edited_at"].isoformat()) for r in rows]
