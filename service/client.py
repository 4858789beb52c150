"""A small client of the HTTP API, as a browser uses it: signed uploads, the job, its progress stream.

`dubbing demo`, the tests and the benchmarks all talk to the service through this, so there is one
reading of the server-sent events and one upload flow.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.errors import ApiRefused
from service.settings import AUDIO_FORMATS


def content_type_of(path: Path) -> str:
    """The media type the service takes for this file, by its extension in the service's list of formats."""
    suffix = path.suffix.lower()
    for audio_format in AUDIO_FORMATS:
        if suffix in audio_format.extensions:
            return audio_format.types[0]
    return mimetypes.guess_type(path.name)[0] or "audio/wav"


@dataclass
class SseEvent:
    id: int | None
    event: str
    data: dict[str, Any]


async def read_events(response: httpx.Response, limit: int | None = None) -> list[SseEvent]:
    """Parse a server-sent event stream until it ends or `limit` events have arrived.

    Call again on the same response for the next events: the line reader is kept on the response.
    """
    out: list[SseEvent] = []
    fields: dict[str, str] = {}
    lines: AsyncIterator[str] = response.extensions.setdefault("sse_lines", response.aiter_lines())
    async for line in lines:
        if line == "":
            if "data" in fields:
                out.append(SseEvent(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                                    json.loads(fields["data"])))
                if limit is not None and len(out) >= limit:
                    return out
            fields = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        fields[key] = value[1:] if value.startswith(" ") else value
    return out


async def follow(client: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> AsyncIterator[SseEvent]:
    """Every event of a job's progress stream, one at a time, until `done` (the stream waits as long as
    the job takes: no read timeout)."""
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as response:
        response.raise_for_status()
        while batch := await read_events(response, limit=1):
            yield batch[0]


async def upload(client: httpx.AsyncClient, headers: dict[str, str], files: dict[str, tuple[str, bytes, str]]
                 ) -> dict[str, str]:
    """Ask for signed URLs for {kind: (filename, bytes, content_type)}, PUT each file; {kind: object_path}."""
    response = await client.post("/v1/uploads", headers=headers, json={"files": [
        {"kind": kind, "filename": name, "content_type": content_type, "size_bytes": len(data)}
        for kind, (name, data, content_type) in files.items()]})
    if response.status_code != 201:
        raise ApiRefused(response)
    objects: dict[str, str] = {}
    for (kind, (_, data, content_type)), ticket in zip(files.items(), response.json()["uploads"], strict=True):
        put = await client.put(ticket["upload_url"], content=data, headers={"Content-Type": content_type})
        put.raise_for_status()
        objects[kind] = ticket["object_path"]
    return objects
