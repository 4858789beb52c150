"""Real PostgreSQL for every test: `DATABASE_URL` when set, else an embedded server.

Migrations run once into a template database; each test gets its own copy of it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from service.db.connection import start_embedded, stop_embedded
from service.settings import Settings
from tests.support import create_template, fresh_database, make_settings
from tests.support.redis import BACKENDS, clear_namespace, new_namespace, reachable, redis_url, settings_for_backend

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "dubbing-numba-cache"))


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="dubbing-pg-") as data_dir:
        try:
            yield start_embedded(Path(data_dir))
        finally:  # before its folder goes: pgserver's own stop at exit finds no data dir then, and it ran on
            stop_embedded(Path(data_dir))


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> str:
    name = f"dubbing_template_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_template(admin_url, name))
    return name


@pytest.fixture
async def database_url(admin_url: str, template_db: str) -> AsyncIterator[str]:
    async with fresh_database(admin_url, template_db) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture(scope="session")
def redis_available() -> str:
    """The machine's Redis (`REDIS_URL`); CI must have one (.ci/run starts it), elsewhere its tests skip."""
    url = redis_url()
    if not reachable(url):
        if os.environ.get("CI"):
            pytest.fail(f"Redis does not answer at {url}: .ci/run should have started it")
        pytest.skip(f"Redis does not answer at {url} (`just test` starts one; or set REDIS_URL)")
    return url


@pytest.fixture
def redis_namespace(redis_available: str) -> Iterator[str]:
    """A key namespace of this test's own on the shared Redis, deleted afterwards."""
    namespace = new_namespace()
    yield namespace
    clear_namespace(redis_available, namespace)


@pytest.fixture(params=BACKENDS)
def queue_backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per QUEUE_BACKEND."""
    return str(request.param)


@pytest.fixture
def backend_settings(settings: Settings, queue_backend: str, request: pytest.FixtureRequest) -> Settings:
    """`settings` for `queue_backend`, with a Redis namespace of the test's own for dramatiq."""
    return settings_for_backend(settings, queue_backend, request)
