"""Pointing DATABASE_URL at Supabase: the transaction pooler cannot hold prepared statements."""

from __future__ import annotations

from service.db.connection import connect_kwargs, is_transaction_pooler, masked_url


def test_transaction_pooler_gets_no_statement_cache() -> None:
    pooler = "postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    session = "postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres"
    assert is_transaction_pooler(pooler)
    assert connect_kwargs(pooler)["statement_cache_size"] == 0
    assert not is_transaction_pooler(session)
    assert "statement_cache_size" not in connect_kwargs(session)
    hinted = "postgresql://u:p@host:5432/db?pgbouncer=true&sslmode=require"
    assert is_transaction_pooler(hinted)
    assert connect_kwargs(hinted)["dsn"] == "postgresql://u:p@host:5432/db?sslmode=require"


def test_database_passwords_are_masked() -> None:
    assert masked_url("postgresql://postgres:hunter2@db.example.com:5432/postgres") == \
        "postgresql://postgres:***@db.example.com:5432/postgres"
