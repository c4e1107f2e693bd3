"""Helpers for tests on a real PostgreSQL server: a schema of their own per test.

::

    async with temporary_schema(url) as schema:
        async with PostgresPersistenceProvider(url, schema=schema) as store:
            ...

Each schema is new (``wfe_t_<uuid hex>``) and dropped with everything in it afterwards,
so tests running in parallel (``pytest -n auto``) on one database never see each other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from wfe_postgres.driver import PostgresDriver, quote_ident

__all__ = ["drop_schema", "new_schema_name", "temporary_schema"]


def new_schema_name(prefix: str = "wfe_t_") -> str:
    """A fresh schema name: ``prefix`` and a random UUID's hex digits."""
    return f"{prefix}{uuid.uuid4().hex}"


async def drop_schema(url: str, schema: str, *, lock_timeout: float = 10.0) -> None:
    """Drop ``schema`` and everything in it, if it exists (waiting at most
    ``lock_timeout`` seconds for connections still using it)."""
    driver = PostgresDriver(url, schema=schema, min_size=0, max_size=1)
    conn = await driver.connect()
    try:
        await conn.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


@asynccontextmanager
async def temporary_schema(url: str, prefix: str = "wfe_t_") -> AsyncIterator[str]:
    """A new schema name for the block (wfe creates the schema on first use); the
    schema is dropped afterwards."""
    schema = new_schema_name(prefix)
    try:
        yield schema
    finally:
        await drop_schema(url, schema)
