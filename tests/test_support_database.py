"""The test helpers derive admin and per-test URLs from TCP and socket URLs alike (the embedded one is a socket)."""

from __future__ import annotations

from urllib.parse import urlparse

import asyncpg
import pytest

from tests.support import admin_url_of, database_name, with_database

TCP = "postgresql://postgres@127.0.0.1:5432/t_abc"
SOCKET = "postgresql://postgres:@/t_abc?host=/tmp/dubbing-pg-x1/data"


@pytest.mark.parametrize("url", [TCP, SOCKET])
def test_names_and_admin_urls_keep_the_server(url: str) -> None:
    assert database_name(url) == "t_abc"
    admin = admin_url_of(url)
    assert database_name(admin) == "postgres"
    same_server = urlparse(admin)._replace(path=""), urlparse(url)._replace(path="")
    assert same_server[0] == same_server[1]  # user, host, port and socket (the query) unchanged
    assert database_name(with_database(url, "other")) == "other"


async def test_the_admin_url_of_the_suites_database_connects(database_url: str) -> None:
    conn = await asyncpg.connect(admin_url_of(database_url))
    try:
        assert await conn.fetchval("SELECT current_database()") == "postgres"
        assert await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database_name(database_url)) == 1
    finally:
        await conn.close()
