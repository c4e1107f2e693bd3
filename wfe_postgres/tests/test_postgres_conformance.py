"""wfe-postgres runs the whole shared conformance suite exactly as a third party would:
repositories, the PostgreSQL lock and queue, and every host scenario with hosts wired to
the PostgreSQL lock and queue. Each test gets a schema of its own (dropped afterwards),
so ``pytest -n auto`` is safe on one database."""

from collections.abc import AsyncIterator

import pytest
from wfe_conformance import NamespaceOpener, ProviderConformance, StoreOpener
from wfe_conformance.scenario_support import HostBuilder
from wfe_conformance.services import postgres_url
from wfe_core.registry import StoreComponents, open_store
from wfe_postgres.testing import temporary_schema

from wfe_core import HostOptions, WorkflowHost
from wfe_postgres import PostgresLockProvider, PostgresPersistenceProvider, PostgresQueueProvider

# Small pools: every test opens several (provider, two locks, queue), tests run in parallel.


class TestPostgresConformance(ProviderConformance):
    @pytest.fixture
    async def pg_store(self) -> AsyncIterator[tuple[str, str]]:
        url = postgres_url()
        async with temporary_schema(url) as schema:
            yield url, schema

    @pytest.fixture
    def store_opener(self, pg_store: tuple[str, str]) -> StoreOpener:
        url, schema = pg_store
        return StoreOpener(url=url, options={"schema": schema, "min_size": 1, "max_size": 2})

    @pytest.fixture
    def namespace_opener(self, pg_store: tuple[str, str]) -> NamespaceOpener:
        """The same schema in another namespace (its keyword given to open_store)."""
        url, schema = pg_store

        async def open_namespace(namespace: str) -> StoreComponents:
            return open_store(url, namespace=namespace, schema=schema, min_size=1, max_size=2)

        return open_namespace

    @pytest.fixture
    async def provider(
        self, pg_store: tuple[str, str]
    ) -> AsyncIterator[PostgresPersistenceProvider]:
        url, schema = pg_store
        async with PostgresPersistenceProvider(url, schema=schema, min_size=1, max_size=4) as p:
            yield p

    @pytest.fixture
    async def lock_provider(self, pg_store: tuple[str, str]) -> AsyncIterator[PostgresLockProvider]:
        url, schema = pg_store
        lock = PostgresLockProvider(url, schema=schema, min_size=1, max_size=4)
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def second_lock_provider(
        self, pg_store: tuple[str, str]
    ) -> AsyncIterator[PostgresLockProvider]:
        url, schema = pg_store
        lock = PostgresLockProvider(url, schema=schema, min_size=1, max_size=4)
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def queue_provider(
        self, pg_store: tuple[str, str]
    ) -> AsyncIterator[PostgresQueueProvider]:
        url, schema = pg_store
        queue = PostgresQueueProvider(url, schema=schema, min_size=1, max_size=4)
        await queue.start()
        yield queue
        await queue.stop()

    @pytest.fixture
    def host_builder(self, provider: PostgresPersistenceProvider) -> HostBuilder:
        def build(options: HostOptions) -> WorkflowHost:
            return WorkflowHost(
                provider,
                lock_provider=PostgresLockProvider(provider.driver),
                queue_provider=PostgresQueueProvider(provider.driver),
                options=options,
            )

        return build
