"""Apply the plain SQL files in `sql/` in order, each once, recorded in `schema_migrations`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from service.errors import MigrationChanged

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# Any constant works; it keeps two processes starting at once from migrating twice.
_MIGRATION_LOCK = 0x64756262


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    return [Migration(version=p.stem, path=p) for p in sorted(sql_dir.glob("[0-9][0-9][0-9]_*.sql"))]


async def applied_checksums(conn: asyncpg.Connection) -> dict[str, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def applied_versions(conn: asyncpg.Connection) -> set[str]:
    return set(await applied_checksums(conn))


def verify(known: list[Migration], applied: dict[str, str]) -> None:
    """Refuse to run against a schema whose applied migrations differ from the files in `sql/`."""
    changed = [m.version for m in known if m.version in applied and applied[m.version] != m.checksum]
    if changed:
        raise MigrationChanged(
            f"migration(s) {', '.join(changed)} changed after they were applied; add a new migration instead"
        )


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    known = discover()
    applied = await applied_checksums(conn)
    verify(known, applied)
    return [m for m in known if m.version not in applied]


async def database_state(pool: asyncpg.Pool, acquire_seconds: float = 2.0) -> tuple[bool, bool]:
    """(the database answers, its migrations are current), for `/readyz`."""
    try:
        async with pool.acquire(timeout=acquire_seconds) as conn:
            return True, not await pending(conn)
    except Exception:
        return False, False


async def server_version(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SHOW server_version"))


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Run every pending migration, each in its own transaction. Returns the versions applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in await pending(conn):
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            applied.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
