"""An app in its own process, configured from the environment as an operator runs `dubbing serve`, and
tokens for it.

Apps: "dubbing" is the `dubbing serve` console script itself (as `tests.support.served` starts it: real
engines, Whisper loaded into the CPU workers); "service" is the same app with no engines
(`bench/_lib/serve_app.py`, `registry={}`) for the HTTP benchmarks; "bare" is a bare Starlette route.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.routes.auth import mint
from tests.support import dubbing_command, free_port

from . import ROOT

JWT_SECRET = "bench-secret-" + "x" * 40
APPS = ("dubbing", "service", "bare", "noop")


def token(user: str, ttl_seconds: int = 3600) -> str:
    return mint(JWT_SECRET, user, ttl_seconds)


def auth(user: str, ttl_seconds: int = 3600) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, ttl_seconds)}"}


@dataclass
class Server:
    app: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def add_app_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", choices=["service", "dubbing"], default="service",
                        help="service: bench/_lib/serve_app.py (no engines); dubbing: the `dubbing serve` command")


def _argv(app: str, role: str = "all") -> list[str]:
    if app == "dubbing":
        return [dubbing_command(), "serve", "--role", role]
    if app in APPS:
        return [sys.executable, "-m", "bench._lib.serve_app", app, role]
    raise ValueError(f"unknown app {app!r}: one of {APPS}")


@contextlib.asynccontextmanager
async def serving(app: str, database_url: str, data_dir: Path, timeout: float = 120.0, role: str = "all",
                  **env: str) -> AsyncIterator[Server]:
    """Start `app` (warning-level JSON logs, one CPU worker unless `env` says otherwise) on a free port, wait
    until it is ready (`/readyz`; `/healthz` for the bare app), stop it on exit (SIGTERM, SIGKILL if it lingers)."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir),
                "SUPABASE_JWT_SECRET": JWT_SECRET, "HOST": "127.0.0.1", "PORT": str(port),
                "LOG_LEVEL": "warning", "LOG_FORMAT": "json", "CPU_WORKERS": "1", **env}
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / (f"{app}-server.log" if role == "all" else f"{app}-{role}-{port}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_argv(app, role), env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(app, port, proc, log_path)
    ready_path = "/healthz" if app == "bare" else "/readyz"
    try:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{app} app exited with {proc.returncode}:\n{server.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(ready_path)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{app} app did not answer {ready_path} in {timeout} s:\n{server.log_tail()}")
                await asyncio.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
