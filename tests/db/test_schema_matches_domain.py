"""The schema's CHECK constraints and the OpenAPI enums say exactly what `service.domain` says."""

from __future__ import annotations

import re

import asyncpg

from service.domain import STAGE_ORDER, TERMINAL, ArtifactKind, EventKind, JobStatus, Stage
from service.routes.openapi import components


async def _allowed(conn: asyncpg.Connection, table: str, column: str) -> set[str]:
    """The values a CHECK constraint on `table.column` lists (`column IN (...)` / `= ANY (ARRAY[...])`)."""
    rows = await conn.fetch(
        """SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
           JOIN pg_class t ON t.oid = c.conrelid
           WHERE t.relname = $1 AND c.contype = 'c'""", table)
    for row in rows:
        definition = row["def"]
        if re.search(rf"\(\(?{column}\b", definition) and ("ANY" in definition or " IN " in definition):
            return set(re.findall(r"'([^']+)'", definition))
    raise AssertionError(f"no CHECK lists the values of {table}.{column}")


async def test_check_constraints_equal_the_domain(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await _allowed(conn, "language_tasks", "stage") == {s.value for s in Stage}
        assert await _allowed(conn, "jobs", "status") == {s.value for s in JobStatus}
        assert await _allowed(conn, "artifacts", "kind") == {k.value for k in ArtifactKind}
        assert await _allowed(conn, "task_events", "kind") == {k.value for k in EventKind}
    finally:
        await conn.close()


async def test_stage_order_table_equals_the_domain(database_url: str) -> None:
    """The ops views order stages by `stage_order`: it must hold every stage, in the domain's order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT stage, terminal FROM stage_order ORDER BY position")
    finally:
        await conn.close()
    assert [r["stage"] for r in rows] == [s.value for s in STAGE_ORDER]
    assert {r["stage"] for r in rows if r["terminal"]} == {s.value for s in TERMINAL}
    assert set(STAGE_ORDER) == set(Stage)


def test_openapi_enums_equal_the_domain() -> None:
    schemas = components()
    assert set(schemas["Stage"]["enum"]) == {s.value for s in Stage}
    assert set(schemas["JobStatus"]["enum"]) == {s.value for s in JobStatus}
    assert set(schemas["ArtifactKind"]["enum"]) == {k.value for k in ArtifactKind}
