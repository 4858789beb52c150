"""Real Redis for the tests: the machine's (`REDIS_URL`, default 127.0.0.1:6379) with a key namespace per test,
or a `redis-server` of a test's own when it must stop and restart it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from service.settings import Settings
from tests.support.service import free_port

DEFAULT_URL = "redis://127.0.0.1:6379/0"
BACKENDS = ("postgres", "dramatiq")


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_URL


def reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def new_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def clear_namespace(url: str, namespace: str) -> None:
    """Delete every key a test's broker made (its queue, message bodies, ack sets, heartbeats)."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def with_backend(settings: Settings, backend: str, url: str | None = None, namespace: str | None = None) -> Settings:
    """`settings` for QUEUE_BACKEND `backend` (dramatiq: the given Redis and key namespace)."""
    if backend == "postgres":
        return settings.with_overrides(queue_backend="postgres")
    return settings.with_overrides(queue_backend="dramatiq", redis_url=url or redis_url(),
                                   redis_namespace=namespace or new_namespace())


def settings_for_backend(settings: Settings, backend: str, request: Any) -> Settings:
    """For a fixture: dramatiq gets the session's Redis and a namespace of the test's own."""
    if backend == "postgres":
        return with_backend(settings, backend)
    return with_backend(settings, backend, request.getfixturevalue("redis_available"),
                        request.getfixturevalue("redis_namespace"))


def backend_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a `dubbing serve` process the same queue settings."""
    return {"QUEUE_BACKEND": settings.queue_backend, "REDIS_URL": settings.redis_url,
            "REDIS_NAMESPACE": settings.redis_namespace}


@dataclass
class RedisServer:
    """A `redis-server` of one test's own, without persistence, like a cache node that restarts empty."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (.ci/run and `just test` install it)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not reachable(self.url):
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        """Kill it and start it again on the same port: everything it held is gone."""
        self.stop()
        self.start()

    def client(self) -> Any:
        return redis.Redis.from_url(self.url)


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
