"""The `dubbing` command: serve, migrate, demo, doctor, retention, token."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service.settings import Settings


def _serve(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.logs import configure
    from service.server import DrainingServer
    from service.wiring import roles
    from service.wiring.drain import request_drain

    configure(settings.log_format, settings.log_level)
    if problem := roles.problem(settings):
        print(f"dubbing serve: {problem}", file=sys.stderr)
        return 2
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=int(settings.shutdown_drain_seconds) + 5)
    DrainingServer(config, on_exit=lambda: request_drain(app)).run()
    return 0


async def _migrate(settings: Settings) -> list[str]:
    from service.db import connection, migrations

    location = await connection.locate(settings)
    conn = await connection.connect(location.url)
    try:
        return await migrations.migrate(conn)
    finally:
        await conn.close()


async def _retention(settings: Settings, dry_run: bool) -> Any:
    from service import retention, retention_schedule
    from service.db import connection, migrations
    from service.storage.factory import open_storage

    location = await connection.locate(settings)
    pool = await connection.create_pool(location.url, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrations.migrate(conn)
        if dry_run:
            return await retention.preview(pool, settings)
        async with open_storage(settings) as storage:
            return await retention_schedule.record(pool, storage, settings, "command")
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dubbing", description="Automatic dubbing backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API and the supervisor")
    serve.add_argument("--role", choices=["all", "api", "worker"], default="all",
                       help="all: API and stages in one process; api: HTTP and progress streams only; "
                            "worker: stages only (HTTP: /healthz, /readyz)")
    sub.add_parser("migrate", help="apply pending SQL migrations")
    sub.add_parser("demo", help="dub a sample or your file through the API", add_help=False)
    sub.add_parser("doctor", help="show the engine each stage uses and check each configured provider")
    retention = sub.add_parser("retention", help="delete expired artifacts, inputs of finished jobs, unused uploads "
                               "and finished jobs' scratch (the service also runs it every RETENTION_INTERVAL_MINUTES)")
    retention.add_argument("--dry-run", action="store_true",
                           help="print what would go (counts and bytes), delete nothing")
    token = sub.add_parser("token", help="mint a local access token for a user id")
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from service.demo import run

        return run(argv[1:])
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "serve":
        return _serve(settings.with_overrides(role=args.role))
    if args.command == "migrate":
        applied = asyncio.run(_migrate(settings))
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
        return 0
    if args.command == "doctor":
        from service import doctor

        return doctor.run(settings)
    if args.command == "retention":
        report = asyncio.run(_retention(settings, args.dry_run))
        print("dry run, nothing deleted; would delete:" if args.dry_run else "deleted:")
        print("\n".join(f"  {line}" for line in report.lines()))
        return 0
    if args.command == "token":
        from service.routes.auth import mint

        print(mint(settings.jwt_secret, args.user, args.ttl, settings.iss))
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
