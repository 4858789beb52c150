"""Request bodies streamed from disk."""

from __future__ import annotations

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
