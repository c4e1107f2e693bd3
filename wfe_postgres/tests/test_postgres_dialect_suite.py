"""The shared SQL dialect suite (:mod:`wfe_sql.testing`) on the real PostgreSQL server,
in a schema of its own per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from wfe_core.registry import StoreComponents
from wfe_sql.testing import DialectStore, SqlDialectSuite

from wfe_postgres import PostgresDriver, PostgresPersistenceProvider, provider_from_url

SMALL: dict[str, Any] = {"min_size": 1, "max_size": 4}


class PostgresStore(DialectStore):
    """A schema of its own on the test server (``url``, ``schema`` from conftest.py)."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema

    def provider(self, **options: Any) -> PostgresPersistenceProvider:
        return PostgresPersistenceProvider(self.url, schema=self.schema, **SMALL, **options)

    def driver(self) -> PostgresDriver:
        return PostgresDriver(self.url, schema=self.schema, **SMALL)

    def components(self) -> StoreComponents:
        return provider_from_url(self.url, schema=self.schema, **SMALL)

    async def _names(self, sql: str, table: str) -> set[str]:
        driver = self.driver()
        try:
            async with driver.connection() as conn:
                return {row[0] for row in await conn.fetch(sql, self.schema, table)}
        finally:
            await driver.close()

    async def column_names(self, table: str) -> set[str]:
        return await self._names(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = $2",
            table,
        )

    async def index_names(self, table: str) -> set[str]:
        return await self._names(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2", table
        )

    @asynccontextmanager
    async def logged_provider(
        self,
    ) -> AsyncIterator[tuple[PostgresPersistenceProvider, list[str]]]:
        sent: list[str] = []
        driver = self.driver()
        connect = driver.connect

        async def logged(*, hints: bool = False) -> asyncpg.Connection:
            conn = await connect(hints=hints)
            conn.add_query_logger(lambda query: sent.append(query.query))
            return conn

        driver.connect = logged  # type: ignore[method-assign]
        async with PostgresPersistenceProvider(driver) as provider:
            yield provider, sent

    async def _synchronous_commit(self, persistence: Any, *, hints: bool) -> bool:
        async with persistence.driver.connection(hints=hints) as conn:
            return bool(await conn.fetchval("SHOW synchronous_commit") == "on")

    async def checkpoint_waits_for_disk(self, persistence: Any) -> bool:
        return await self._synchronous_commit(persistence, hints=False)

    async def hint_waits_for_disk(self, persistence: Any) -> bool:
        return await self._synchronous_commit(persistence, hints=True)


class TestPostgresDialect(SqlDialectSuite):
    """Every part of the suite; asyncpg sends a batch's rows as one statement."""

    batched_rows_are_one_statement = True
    concurrent_providers = 8

    @pytest.fixture
    def dialect_store(self, url: str, schema: str) -> PostgresStore:
        return PostgresStore(url, schema)
