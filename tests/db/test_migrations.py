"""Migrations: applied once each, in order, and refused when an applied file was edited afterwards."""

from __future__ import annotations

import asyncpg
import pytest

from service.db import migrations


async def test_everything_is_applied_and_nothing_pending(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrations.pending(conn) == []
        assert await migrations.migrate(conn) == []
        assert await migrations.applied_versions(conn) == {m.version for m in migrations.discover()}
    finally:
        await conn.close()


async def test_an_applied_migration_that_changed_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        first = migrations.discover()[0].version
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = $1", first)
        with pytest.raises(migrations.MigrationChanged, match=first):
            await migrations.migrate(conn)
    finally:
        await conn.close()
