"""A webhook receiver as a customer would run one: it verifies every delivery with the `standardwebhooks`
package (signature, timestamp within 5 minutes), keeps what it received, and can be told to refuse for a while
(answer 503) to test retries. Runs under uvicorn on a free port of 127.0.0.1, in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook


@dataclass
class Delivery:
    webhook_id: str
    event: dict[str, Any]
    received_at: float  # time.time()
    verified: bool


@dataclass
class Receiver:
    secret: str
    url: str = ""
    refusing_until: float = 0.0  # time.time() before which every request is answered 503
    deliveries: list[Delivery] = field(default_factory=list)  # accepted (2xx) ones, in arrival order
    refused: int = 0
    bad_signatures: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def unique(self) -> dict[str, Delivery]:
        """One delivery per webhook-id, as a receiver deduplicating by id keeps them."""
        firsts: dict[str, Delivery] = {}
        for delivery in self.deliveries:
            firsts.setdefault(delivery.webhook_id, delivery)
        return firsts

    def types(self) -> list[str]:
        return sorted(d.event["type"] for d in self.unique().values())

    async def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until `count` distinct messages were accepted."""
        async def enough() -> None:
            while len(self.unique()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(enough(), timeout)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if time.time() < self.refusing_until:
            self.refused += 1
            await _answer(send, 503, b'{"error":"down for maintenance"}')
            return
        try:
            Webhook(self.secret).verify(body, headers)
        except Exception:
            self.bad_signatures += 1
            await _answer(send, 400, b'{"error":"bad signature"}')
            return
        self.deliveries.append(Delivery(headers["webhook-id"], json.loads(body), time.time(), True))
        self.arrived.set()
        await _answer(send, 204, b"")


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def receiving(secret: str, path: str = "/hooks/dubbing") -> AsyncIterator[Receiver]:
    receiver = Receiver(secret)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}{path}"
    server = uvicorn.Server(uvicorn.Config(receiver, lifespan="off", log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)
