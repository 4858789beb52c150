"""A new user's machine: no DATABASE_URL, so the service starts its own PostgreSQL in DATA_DIR."""

from __future__ import annotations

from pathlib import Path

from service.db import migrations
from service.settings import Settings
from tests.support import JWT_SECRET, running_service


async def test_service_runs_on_its_embedded_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, jwt_secret=JWT_SECRET, cpu_workers=1)
    async with running_service(settings) as svc:
        assert svc.services.database.embedded
        ready = await svc.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        response = await svc.create_job("newcomer", ["es"])
        assert response.status_code == 201
        applied = await svc.pool.fetchval("SELECT count(*) FROM schema_migrations")
        assert applied == len(migrations.discover())
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
