"""`dubbing demo`: run the service and dub a file through its API, exactly as a browser would.

Starts `dubbing serve` in its own process on a free port (embedded database and storage unless configured),
mints a token, asks for signed upload URLs, uploads, creates the job, follows the server-sent
events with a live progress bar per language (plain lines when output is not a terminal), then downloads the
artifacts. Ctrl-C stops the service too, and with it the embedded database it started.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from service import client as client_api
from service.errors import ApiRefused
from service.logs import configure
from service.routes.auth import mint
from service.sample import make_sample
from service.settings import Settings

DEMO_USER = "demo-user"
PLAIN_STEP = 0.1  # without a terminal, a line per language each time its progress passes another tenth


@dataclass
class Row:
    progress: float = 0.0
    stage: str = "queued"
    note: str = ""
    remaining: float | None = None


def time_left(row: Row) -> str:
    if row.remaining is None or row.stage in ("complete", "failed", "cancelled"):
        return ""
    seconds = round(row.remaining)
    if seconds < 1:
        return "almost done"
    return f"about {seconds // 60} min {seconds % 60:02d} s left" if seconds >= 60 else f"about {seconds} s left"


class ProgressBoard:
    """One live bar per language on a terminal (stage, percent, time remaining), drawn in place by `rich`;
    where output is not a terminal (a log, a pipe), a plain line when a language changes stage or moves on
    by another tenth."""

    def __init__(self, languages: list[str], out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.rows = {language: Row() for language in languages}
        self.printed: dict[str, tuple[str, str, int]] = {}
        console = Console(file=self.out)
        self.bars: Progress | None = None
        if console.is_terminal:
            self.bars = Progress(TextColumn("  {task.fields[language]:<4}"), BarColumn(bar_width=30),
                                 TaskProgressColumn(), TextColumn("{task.fields[stage]:<11} {task.fields[left]}"),
                                 console=console, redirect_stdout=False, redirect_stderr=False)
            self.tasks = {language: self.bars.add_task("", total=1.0, language=language, stage="queued", left="")
                          for language in languages}

    def __enter__(self) -> ProgressBoard:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def update(self, language: str, progress: float, stage: str, note: str = "",
               remaining: float | None = None) -> None:
        row = self.rows.setdefault(language, Row())
        row.progress, row.stage, row.note = progress, stage, note
        if remaining is not None:  # the task's estimate: it holds until the next one comes
            row.remaining = remaining
        if self.bars is not None:
            self.bars.update(self.tasks[language], completed=progress, stage=stage,
                             left=" ".join(filter(None, (time_left(row), note))))
            return
        key = (stage, note, int(progress / PLAIN_STEP + 1e-9))
        if self.printed.get(language) == key:
            return
        self.printed[language] = key
        line = f"  {language}: {stage:<11} {progress * 100:5.1f}%  {time_left(row)}  {note}"
        print(line.rstrip(), file=self.out, flush=True)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _wait_ready(base: str, server: asyncio.subprocess.Process) -> bool:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while server.returncode is None:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    return False


async def _run_demo(settings: Settings, voice: Path, background: Path | None, targets: list[str],
                    source: str, out_dir: Path) -> int:
    """Start `dubbing serve` in its own process, exactly as `just serve` does, and use it over HTTP."""
    port = _free_port(settings.host)
    base = f"http://{settings.host}:{port}"
    settings = settings.with_overrides(port=port, public_base_url=base)
    env = {**os.environ, "PORT": str(port), "PUBLIC_BASE_URL": base, "LOG_LEVEL": "warning"}
    print(f"Starting the service at {base} (data in {settings.data_dir}) ...", flush=True)
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "service.cli", "serve", env=env)
    try:
        if not await _wait_ready(base, server):
            print(f"The service stopped during start-up (exit code {server.returncode})")
            return 1
        return await _client_flow(base, settings, voice, background, targets, source, out_dir)
    finally:
        if server.returncode is None:
            server.terminate()
            await server.wait()


async def _client_flow(base: str, settings: Settings, voice: Path, background: Path | None, targets: list[str],
                       source: str, out_dir: Path) -> int:
    headers = {"Authorization": f"Bearer {mint(settings.jwt_secret, DEMO_USER, issuer=settings.iss)}"}
    paths = {"voice": voice, **({"background": background} if background else {})}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        try:
            objects = await client_api.upload(client, headers, {
                kind: (path.name, path.read_bytes(), client_api.content_type_of(path)) for kind, path in paths.items()})
        except ApiRefused as exc:
            print(f"Upload refused: {exc}")
            return 1
        for kind, path in paths.items():
            print(f"Uploaded {path} → {objects[kind]}")
        body: dict[str, Any] = {"voice_object": objects["voice"], "source_language": source,
                                "target_languages": targets}
        if "background" in objects:
            body["background_object"] = objects["background"]
        created = await client.post("/v1/jobs", headers=headers, json=body)
        if created.status_code not in (200, 201):
            print(f"Job refused: {ApiRefused(created)}")
            return 1
        job = created.json()
        print(f"Job {job['id']}: {source} → {', '.join(targets)}")
        started = time.perf_counter()
        status = "unknown"
        with ProgressBoard([t["target_language"] for t in job["tasks"]]) as board:
            async for event in client_api.follow(client, job["id"], headers):
                data = event.data
                if data.get("target_language") and event.event in ("stage", "progress", "failed"):
                    note = data.get("error", {}).get("message", "") if event.event == "failed" else ""
                    board.update(data["target_language"], data.get("progress") or 0.0, data.get("stage") or "", note,
                                 data.get("remaining_seconds"))
                if event.event == "done":
                    status = data["status"]
        print(f"Finished ({status}) in {time.perf_counter() - started:.1f} s")
        listed = (await client.get(f"/v1/jobs/{job['id']}/artifacts", headers=headers)).json()["artifacts"]
        target_dir = out_dir / job["id"]
        for artifact in listed:
            folder = target_dir / (artifact["target_language"] or "source")
            folder.mkdir(parents=True, exist_ok=True)
            name = artifact["object_path"].rsplit("/", 1)[-1]
            (folder / name).write_bytes((await client.get(artifact["download_url"])).content)
        print(f"Artifacts ({len(listed)}) downloaded to {target_dir}/:")
        for path in sorted(target_dir.rglob("*")):
            if path.is_file():
                print(f"  {path}  ({path.stat().st_size:,} bytes)")
        final = (await client.get(f"/v1/jobs/{job['id']}", headers=headers)).json()
        return 0 if final["status"] == "complete" else 1


def run(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="dubbing demo", description="Dub a file through the API")
    parser.add_argument("files", nargs="*", type=Path, help="voice.wav [background.wav]; a sample if omitted")
    parser.add_argument("--to", default="es", help="target languages, comma-separated (default: es)")
    parser.add_argument("--from", dest="source", default="en", help="source language (default: en)")
    parser.add_argument("--out", type=Path, default=Path("dubbing-output"), help="where to save the results")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure(settings.log_format, "warning" if settings.log_level == "info" else settings.log_level)
    if len(args.files) > 2:
        parser.error("give at most a voice file and a background file")
    if args.files:
        voice, background = args.files[0], (args.files[1] if len(args.files) > 1 else None)
        for path in filter(None, (voice, background)):
            if not path.is_file():
                parser.error(f"{path} is not a file")
    else:
        sample = make_sample(Path(tempfile.mkdtemp(prefix="dubbing-sample-")))
        voice, background = sample.voice, sample.background
        print(f"Made a sample voice ({voice}) and background bed ({background})")
    targets = [t.strip() for t in args.to.split(",") if t.strip()]
    try:
        return asyncio.run(_run_demo(settings, voice, background, targets, args.source, args.out))
    except KeyboardInterrupt:  # Ctrl-C: `_run_demo` has stopped the service (and its embedded database) already
        print("Stopped.")
        return 130
