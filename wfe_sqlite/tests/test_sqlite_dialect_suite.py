"""The shared SQL dialect suite (:mod:`wfe_sql.testing`) on a real SQLite file per test."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from wfe_core.registry import StoreComponents
from wfe_sql.testing import DialectStore, SqlDialectSuite

from wfe_sqlite import SqliteDriver, SqlitePersistenceProvider, provider_from_url


class SqliteStore(DialectStore):
    """A database file in a test's temporary folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def provider(self, **options: Any) -> SqlitePersistenceProvider:
        return SqlitePersistenceProvider(self.path, **options)

    def driver(self) -> SqliteDriver:
        return SqliteDriver(self.path)

    def components(self) -> StoreComponents:
        return provider_from_url(f"sqlite:///{self.path}")

    def _rows(self, sql: str) -> list[Any]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    async def column_names(self, table: str) -> set[str]:
        return {row[1] for row in self._rows(f"PRAGMA table_info({table})")}

    async def index_names(self, table: str) -> set[str]:
        return {row[1] for row in self._rows(f"PRAGMA index_list({table})")}

    @asynccontextmanager
    async def logged_provider(self) -> AsyncIterator[tuple[SqlitePersistenceProvider, list[str]]]:
        sent: list[str] = []
        async with self.provider() as provider:
            await provider.driver.on_writer(lambda conn: conn.set_trace_callback(sent.append))
            yield provider, sent

    async def checkpoint_waits_for_disk(self, persistence: Any) -> bool:
        # the level the writer's last transaction ran at: FULL (2) syncs the log
        return bool(await persistence.driver.pragma("synchronous") == 2)

    async def hint_waits_for_disk(self, persistence: Any) -> bool:
        return bool(await persistence.driver.pragma("synchronous") == 2)


class TestSqliteDialect(SqlDialectSuite):
    """Every part of the suite; SQLite runs a batch's rows one statement each."""

    batched_rows_are_one_statement = False

    @pytest.fixture
    def dialect_store(self, tmp_path: Path) -> SqliteStore:
        return SqliteStore(tmp_path / "wfe.db")
