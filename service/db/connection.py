"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL kept in `DATA_DIR`."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse, urlunparse

import asyncpg

from service.scratch import pid_alive
from service.settings import Settings


@dataclass(frozen=True)
class DatabaseLocation:
    url: str
    listen_url: str
    embedded: bool


def is_transaction_pooler(url: str) -> bool:
    """Supavisor's transaction mode listens on 6543 and cannot hold prepared statements."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    return parsed.port == 6543 or query.get("pgbouncer", [""])[0] == "true"


def masked_url(url: str) -> str:
    """The URL to show (`dubbing doctor`): its password replaced by `***`."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
        parsed = parsed._replace(netloc=netloc)
    return urlunparse(parsed)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server; blocking, so callers run it in a thread."""
    import pgserver  # imported late: only the embedded mode needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(server.get_uri())


def stop_embedded(data_dir: Path) -> None:
    """Let go of the embedded server; the last process using it stops it. Blocking: call from a thread.

    pgserver does this at interpreter exit, but a `dubbing serve` stopped by SIGTERM never gets there (uvicorn
    raises the signal again after its graceful shutdown, and the default action ends the process without exit
    handlers), and the server ran on after it. Processes that died without letting go (kill -9) still hold a
    handle in pgserver's list: they are dropped first, or the server would never be stopped.
    """
    from pgserver.postgres_server import PostgresServer

    server = PostgresServer._instances.get(data_dir.expanduser().resolve())
    if server is None:  # not started by this process, or already let go
        return
    with server._lock:  # pgserver's inter-process lock over its handle list (`.handle_pids.json`)
        handles = server.global_process_id_list
        for pid in handles.get():
            if pid != os.getpid() and not pid_alive(pid):
                handles.get_and_remove(pid)
    server.cleanup()  # with cleanup_mode "stop": stops the server only, never deletes its data


async def locate(settings: Settings) -> DatabaseLocation:
    if settings.database_url:
        return DatabaseLocation(
            url=settings.database_url,
            listen_url=settings.database_listen_url or settings.database_url,
            embedded=False,
        )
    url = await asyncio.to_thread(start_embedded, settings.embedded_db_dir)
    return DatabaseLocation(url=url, listen_url=url, embedded=True)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def connect_kwargs(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    # `pgbouncer=true` is a hint for us (as for other clients), not a server setting: drop it.
    query = "&".join(p for p in parsed.query.split("&") if p and not p.startswith("pgbouncer="))
    kwargs: dict[str, Any] = {"dsn": urlunparse(parsed._replace(query=query))}
    if is_transaction_pooler(url):
        kwargs["statement_cache_size"] = 0
    return kwargs


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release: a round trip per query the service makes. Pool connections never hold session state (no SET,
    no LISTEN, which has its own connection, no session advisory lock: the locks taken are transaction-scoped),
    so there is nothing for it to undo; asyncpg still rolls back a transaction left open.
    """


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        **connect_kwargs(url), min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(**connect_kwargs(url))
    await _init_connection(conn)
    return conn


# Failures of the database itself, not of the work: a connection cut or refused, the server shutting
# down or out of connections, a serialization conflict or deadlock to retry. The work that met one
# waits for the database and goes on; it is never counted as the task's own failure. A request that meets one
# is answered 503 (`routes/table.handle_database_outage`).
OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # 08xxx, including "connection does not exist"
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: terminated backend, shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.InterfaceError,  # the connection was closed under a query, the pool is closing
    asyncpg.exceptions.InternalClientError,  # a connection cut mid-exchange ("cannot switch to state ...")
    ConnectionError,
    TimeoutError,  # waiting for a pool connection
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGES)


async def wait_until_available(pool: asyncpg.Pool, *, first_wait: float = 0.2, longest_wait: float = 5.0) -> None:
    """Return once the database answers again (backing off between tries); cancel to give up."""
    wait = first_wait
    while True:
        try:
            async with pool.acquire(timeout=2.0) as conn:
                await conn.fetchval("SELECT 1")
            return
        except Exception as exc:
            if not is_outage(exc) and not isinstance(exc, OSError):
                raise
        await asyncio.sleep(wait)
        wait = min(wait * 2, longest_wait)
