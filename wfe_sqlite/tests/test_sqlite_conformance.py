"""wfe-sqlite runs the shared conformance suite exactly as a third party would: the whole
of it on a database file (repositories, the SQLite lock and queue, every host scenario
with hosts wired to the SQLite lock and queue, durability across reopen and across
processes), and the persistence suites again on ``:memory:`` (not DURABLE: the
durability tests skip)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wfe_conformance import (
    NamespaceOpener,
    PersistenceConformance,
    ProviderConformance,
    StoreOpener,
)
from wfe_conformance.scenario_support import HostBuilder
from wfe_core.registry import StoreComponents, open_store

from wfe_core import HostOptions, WorkflowHost
from wfe_sqlite import SqliteLockProvider, SqlitePersistenceProvider, SqliteQueueProvider


class TestSqliteFileConformance(ProviderConformance):
    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> StoreOpener:
        return StoreOpener(url=f"sqlite:///{tmp_path / 'wfe.db'}")

    @pytest.fixture
    def namespace_opener(self, tmp_path: Path) -> NamespaceOpener:
        """The same database file in another namespace, opened by URL as users do."""

        async def open_namespace(namespace: str) -> StoreComponents:
            return open_store(f"sqlite:///{tmp_path / 'wfe.db'}?namespace={namespace}")

        return open_namespace

    @pytest.fixture
    async def provider(self, tmp_path: Path) -> AsyncIterator[SqlitePersistenceProvider]:
        async with SqlitePersistenceProvider(tmp_path / "wfe.db") as p:
            yield p

    @pytest.fixture
    async def lock_provider(self, tmp_path: Path) -> AsyncIterator[SqliteLockProvider]:
        lock = SqliteLockProvider(tmp_path / "wfe.db")
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def second_lock_provider(self, tmp_path: Path) -> AsyncIterator[SqliteLockProvider]:
        lock = SqliteLockProvider(tmp_path / "wfe.db")
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def queue_provider(self, tmp_path: Path) -> AsyncIterator[SqliteQueueProvider]:
        queue = SqliteQueueProvider(tmp_path / "wfe.db")
        await queue.start()
        yield queue
        await queue.stop()

    @pytest.fixture
    def host_builder(self, provider: SqlitePersistenceProvider) -> HostBuilder:
        def build(options: HostOptions) -> WorkflowHost:
            return WorkflowHost(
                provider,
                lock_provider=SqliteLockProvider(provider.driver),
                queue_provider=SqliteQueueProvider(provider.driver),
                options=options,
            )

        return build


class TestSqliteMemoryConformance(PersistenceConformance):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[SqlitePersistenceProvider]:
        async with SqlitePersistenceProvider(":memory:") as p:
            yield p
