"""A PostgreSQL database per test (or benchmark): migrations run once into a template, each user gets a copy."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse, urlunparse

import asyncpg

from service.db import migrations

ADMIN_DATABASE = "postgres"


def with_database(url: str, name: str) -> str:
    """`url` naming database `name` instead: TCP (`postgresql://u@host:5432/db`) and socket URLs
    (`postgresql://u@/db?host=/tmp/dir`, the embedded server's) alike; the query string is kept."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    """The database a URL names (its path), whatever its host or socket query says."""
    return urlparse(url).path.lstrip("/")


def admin_url_of(url: str) -> str:
    """The maintenance database on the same server as `url` (to create, drop or terminate others)."""
    return with_database(url, ADMIN_DATABASE)


async def create_template(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, name))
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    """Drop `name`, ending whatever sessions a test or benchmark left open on it."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(admin_url: str, template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    try:
        yield with_database(admin_url, name)
    finally:
        await drop_database(admin_url, name)


@asynccontextmanager
async def scratch_database(admin_url: str | None = None, prefix: str = "bench") -> AsyncIterator[str]:
    """A migrated database of its own for a benchmark run, dropped afterwards (`DATABASE_URL` by default)."""
    admin = admin_url or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    template = f"{prefix}_template_{uuid.uuid4().hex[:8]}"
    await create_template(admin, template)
    try:
        async with fresh_database(admin, template) as url:
            yield url
    finally:
        await drop_database(admin, template)
