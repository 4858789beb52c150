"""`/v1/jobs/{id}/transcript`: the job's source transcript as people edit it (text, timing, speaker; split and
merge), each change guarded by the revision the editor saw (If-Match: 412 when someone edited first) and refused
while the job renders (409). Shared with the language routes: whose job it is, and reading If-Match."""

from __future__ import annotations

import dataclasses
import re

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from service.db import jobs, segments
from service.db.jobs import StoredJob
from service.db.segments import Edit, EditableTranscript, SourceSegment
from service.errors import ApiError, EditRefused, ErrorCode
from service.routes import models
from service.routes.auth import User, current_user
from service.routes.errors import not_found
from service.routes.models import SegmentPatch, SegmentSplit, read_body, respond
from service.routes.requests import path_uuid
from service.routes.services import services

_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')
MIN_SEGMENT_SECONDS = 0.05


async def owned_job(request: Request) -> tuple[User, StoredJob]:
    """The caller and their job; 404 for anyone else's (or a deleted one), whatever the route."""
    user = await current_user(request)
    job_id = path_uuid(request)
    pool = services(request).db.pool
    job = await jobs.by_id(pool, job_id) if await jobs.owned(pool, user.id, job_id) else None
    if job is None:
        raise not_found("Job not found")
    return user, job


def if_match(request: Request, required: bool) -> int | None:
    """The revision the editor saw (`If-Match: "3"`); None for `*` or, when not `required`, none sent."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        if required and raw is None:
            raise ApiError(428, ErrorCode.PRECONDITION_REQUIRED,
                           "Send If-Match with the revision you edited (the ETag of the transcript)")
        return None
    match = _ETAG.match(raw)
    if match is None:
        raise ApiError(400, ErrorCode.INVALID_FIELD, "If-Match must be a revision, such as \"3\"")
    return int(match.group(1))


def segment_id(request: Request) -> int:
    raw = request.path_params["segment_id"]
    if not raw.isdigit() or len(raw) > 9:
        raise not_found("No such segment")
    return int(raw)


def etag(revision: int) -> dict[str, str]:
    return {"ETag": f'"{revision}"'}


def answer(transcript: EditableTranscript) -> Response:
    response = respond(transcript.to_json(), models.EditableTranscript)
    response.headers.update(etag(transcript.revision))
    return response


async def get_transcript(request: Request) -> Response:
    _, job = await owned_job(request)
    transcript = await segments.load(services(request).db.pool, job.id)
    if transcript is None:
        raise EditRefused("The transcript is not ready yet")
    return answer(transcript)


def _find(transcript: EditableTranscript, wanted: int) -> int:
    for index, segment in enumerate(transcript.segments):
        if segment.id == wanted:
            return index
    raise not_found("No such segment")


def _check_timing(transcript: EditableTranscript, index: int, start: float, end: float, job: StoredJob) -> None:
    """Within the recording, at least a moment long, and not over its neighbours."""
    if end - start < MIN_SEGMENT_SECONDS:
        raise ApiError(422, ErrorCode.INVALID_TIMING, f"'end' must be at least {MIN_SEGMENT_SECONDS} s after 'start'")
    limit = job.voice.duration_seconds
    if end > limit + 0.001:
        raise ApiError(422, ErrorCode.INVALID_TIMING, f"'end' is past the recording's end ({limit:.3f} s)")
    before = transcript.segments[index - 1] if index > 0 else None
    after = transcript.segments[index + 1] if index + 1 < len(transcript.segments) else None
    if before is not None and start < before.end - 0.001:
        raise ApiError(422, ErrorCode.INVALID_TIMING,
                       f"'start' is inside segment {before.id}, which ends at {before.end:.3f} s")
    if after is not None and end > after.start + 0.001:
        raise ApiError(422, ErrorCode.INVALID_TIMING,
                       f"'end' is inside segment {after.id}, which starts at {after.start:.3f} s")


async def _edited(request: Request, job: StoredJob) -> EditableTranscript:
    transcript = await segments.load(services(request).db.pool, job.id)
    assert transcript is not None
    return transcript


async def patch_segment(request: Request) -> Response:
    user, job = await owned_job(request)
    wanted = segment_id(request)
    expected = if_match(request, required=True)
    body = await read_body(request, SegmentPatch)
    async with services(request).db.pool.acquire() as conn, conn.transaction():
        transcript = await segments.lock_for_edit(conn, job.id, expected)
        index = _find(transcript, wanted)
        old = transcript.segments[index]
        new = dataclasses.replace(
            old,
            text=old.text if body.text is msgspec.UNSET else " ".join(body.text.split()),
            start=old.start if body.start is msgspec.UNSET else float(body.start),
            end=old.end if body.end is msgspec.UNSET else float(body.end),
            speaker=old.speaker if body.speaker is msgspec.UNSET else body.speaker)
        if (new.start, new.end) != (old.start, old.end):
            _check_timing(transcript, index, new.start, new.end, job)
        edits = [Edit(old.id, "edit", name, getattr(old, name), getattr(new, name))
                 for name in ("text", "start", "end", "speaker") if getattr(old, name) != getattr(new, name)]
        if edits:
            await segments.apply(conn, job.id, user.id, [new], [], edits)
    return answer(await _edited(request, job))


def _split_words(segment: SourceSegment, at: float) -> tuple[str, str]:
    words = segment.text.split()
    if len(words) < 2:
        raise ApiError(422, ErrorCode.MISSING_FIELD,
                       "The segment has one word: give 'text_before' and 'text_after' to split it")
    share = (at - segment.start) / (segment.end - segment.start)
    cut = min(max(round(len(words) * share), 1), len(words) - 1)
    return " ".join(words[:cut]), " ".join(words[cut:])


async def split_segment(request: Request) -> Response:
    user, job = await owned_job(request)
    wanted = segment_id(request)
    expected = if_match(request, required=True)
    body = await read_body(request, SegmentSplit)
    if (body.text_before is None) != (body.text_after is None):
        raise ApiError(422, ErrorCode.MISSING_FIELD, "Give both 'text_before' and 'text_after', or neither")
    async with services(request).db.pool.acquire() as conn, conn.transaction():
        transcript = await segments.lock_for_edit(conn, job.id, expected)
        old = transcript.segments[_find(transcript, wanted)]
        if not old.start + MIN_SEGMENT_SECONDS <= body.at <= old.end - MIN_SEGMENT_SECONDS:
            raise ApiError(422, ErrorCode.INVALID_TIMING,
                           f"'at' must fall inside the segment ({old.start:.3f} s to {old.end:.3f} s)")
        if body.text_before is not None and body.text_after is not None:
            before_text, after_text = " ".join(body.text_before.split()), " ".join(body.text_after.split())
        else:
            before_text, after_text = _split_words(old, body.at)
        new_id = await segments.next_id(conn, job.id)
        first = dataclasses.replace(old, text=before_text, end=body.at)
        second = SourceSegment(new_id, body.at, old.end, old.speaker, after_text, old.group)
        edits = [Edit(old.id, "split", "text", old.text, before_text), Edit(old.id, "split", "end", old.end, body.at),
                 Edit(new_id, "split", "start", None, body.at), Edit(new_id, "split", "end", None, old.end),
                 Edit(new_id, "split", "text", None, after_text), Edit(new_id, "split", "speaker", None, old.speaker)]
        await segments.apply(conn, job.id, user.id, [first, second], [], edits)
    return answer(await _edited(request, job))


async def merge_segment(request: Request) -> Response:
    """The segment and the one after it become one (the first's id, speaker and start; the second's end)."""
    user, job = await owned_job(request)
    wanted = segment_id(request)
    expected = if_match(request, required=True)
    async with services(request).db.pool.acquire() as conn, conn.transaction():
        transcript = await segments.lock_for_edit(conn, job.id, expected)
        index = _find(transcript, wanted)
        if index + 1 >= len(transcript.segments):
            raise ApiError(422, ErrorCode.INVALID_TIMING, "The last segment has none after it to merge with")
        first, second = transcript.segments[index], transcript.segments[index + 1]
        merged = dataclasses.replace(first, text=f"{first.text} {second.text}", end=second.end)
        edits = [Edit(first.id, "merge", "text", first.text, merged.text),
                 Edit(first.id, "merge", "end", first.end, merged.end),
                 Edit(second.id, "merge", "text", second.text, None)]
        await segments.apply(conn, job.id, user.id, [merged], [second.id], edits)
    return answer(await _edited(request, job))


async def segment_history(request: Request) -> Response:
    _, job = await owned_job(request)
    entries = await segments.history(services(request).db.pool, job.id, segment_id(request))
    return respond({"edits": [e.to_json() for e in entries]}, models.SegmentHistory)
