"""`dubbing doctor`: which engine each stage will use, and one cheap authenticated call per provider.

Secrets are reported as set or not set, never shown; URLs lose their passwords.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from service.db import connection, migrations
from service.db.connection import masked_url
from service.engines.selection import choose_engines, describe, open_clients
from service.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _is_set(value: str | None) -> str:
    return "set" if value else "not set"


async def _run(name: str, call: Callable[[], Awaitable[str]]) -> Check:
    try:
        return Check(name, True, await call())
    except Exception as exc:  # a doctor reports every failure as a line, never a traceback
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return Check(name, False, detail[:300])


async def _database(settings: Settings) -> str:
    location = await connection.locate(settings)
    conn = await connection.connect(location.url)
    try:
        version = await migrations.server_version(conn)
        waiting = await migrations.pending(conn)
    finally:
        await conn.close()
    where = "embedded" if location.embedded else masked_url(location.url)
    return f"PostgreSQL {version} ({where}); migrations " + (
        "up to date" if not waiting else f"pending: {', '.join(m.version for m in waiting)}")


def _binary(name: str) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        path = shutil.which(name)
        if path is None:
            raise RuntimeError(f"{name} is not installed (just setup installs it)")
        return path

    return check


async def diagnose(settings: Settings,
                   transport: httpx.AsyncBaseTransport | None = None) -> tuple[list[str], list[Check]]:
    """The configuration lines and the checks; the caller prints them."""
    where = masked_url(settings.database_url) if settings.database_url else f"embedded in {settings.embedded_db_dir}"
    lines = [
        f"database: {where}",
        f"storage: supabase ({settings.supabase_url}, bucket {settings.storage_bucket})" if settings.cloud_storage
        else f"storage: local disk ({settings.storage_dir}, bucket {settings.storage_bucket})",
        "auth: " + ", ".join(filter(None, [
            "HS256 secret " + _is_set(settings.jwt_secret),
            f"JWKS at {settings.supabase_url}/auth/v1/.well-known/jwks.json" if settings.supabase_url else "",
        ])),
        f"keys: SUPABASE_SERVICE_KEY {_is_set(settings.supabase_service_key)}, "
        f"DEEPGRAM_API_KEY {_is_set(settings.deepgram_api_key)}, OPENAI_API_KEY {_is_set(settings.openai_api_key)}",
    ]
    checks: list[Check] = [await _run("database", lambda: _database(settings))]
    clients = open_clients(settings, transport)
    try:
        with ThreadPoolExecutor(1) as executor:
            try:
                engines = await asyncio.to_thread(choose_engines, settings, clients, executor)
                lines += [f"engine for {stage}: {engine}" for stage, engine in describe(engines).items()]
            except Exception as exc:
                checks.append(Check("engines", False, getattr(exc, "message", str(exc))))
        if settings.cloud_storage:
            from service.storage.supabase import SupabaseStorage, make_client

            storage_client = make_client(settings, transport)
            try:
                storage = SupabaseStorage(storage_client, settings.supabase_url or "", settings.storage_bucket)
                checks.append(await _run("supabase storage", storage.check))
            finally:
                await storage_client.aclose()
        if settings.supabase_url:
            from service.wiring.lifespan import make_verifier

            verifier = make_verifier(settings, transport)
            assert verifier.jwks is not None
            jwks = verifier.jwks

            async def fetch_keys() -> str:
                await jwks.refresh()
                return f"{len(jwks.keys)} signing key(s) in the project's JWKS"

            checks.append(await _run("supabase auth", fetch_keys))
            await jwks.client.aclose()
        if clients.deepgram_stt is not None:
            from service.engines.cloud import deepgram

            stt_client = clients.deepgram_stt
            checks.append(await _run("deepgram", lambda: deepgram.check(stt_client)))
        if clients.openai is not None:
            from service.engines.cloud import openai_translate

            openai_client = clients.openai
            checks.append(await _run("openai", lambda: openai_translate.check(openai_client, settings.openai_model)))
    finally:
        await clients.aclose()
    for binary in ("ffmpeg", "espeak-ng", "apertium"):
        checks.append(await _run(binary, _binary(binary)))
    return lines, checks


def report(lines: list[str], checks: list[Check]) -> str:
    return "\n".join([*lines, *(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks)])


def run(settings: Settings) -> int:
    lines, checks = asyncio.run(diagnose(settings))
    print(report(lines, checks))
    return 0 if all(c.ok for c in checks) else 1
