"""Request bodies streamed from disk."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio


class FileBody:
    """A request body read from disk in chunks. Not a generator: each iteration, so each retry of the
    request, opens the file again and sends it from the start."""

    def __init__(self, path: str, chunk_size: int = 1 << 20) -> None:
        self.path = path
        self.chunk_size = chunk_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self.path, "rb") as fh:
            while chunk := await fh.read(self.chunk_size):
                yield chunk


class MultipartFileBody:
    """A `multipart/form-data` body of plain fields and one file streamed from disk (its part last), for APIs
    that take uploads as forms (ElevenLabs). Like FileBody, each iteration starts again from the top."""

    def __init__(self, field: str, path: str, filename: str, content_type: str,
                 fields: dict[str, str] | None = None) -> None:
        self.boundary = f"dubbing-{uuid.uuid4().hex}"
        self.file = FileBody(path)
        self.head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in (fields or {}).items()
        ) + (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
             f"Content-Type: {content_type}\r\n\r\n").encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        async for chunk in self.file:
            yield chunk
        yield self.tail
