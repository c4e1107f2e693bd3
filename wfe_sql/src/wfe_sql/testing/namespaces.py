"""Namespaces on the dialect's store: each namespace has tables, indexes and a schema
version of its own (:func:`wfe_sql.schema.tables_for`), created and migrated on their
own, and the default namespace's tables are the ``wfe_*`` ones of before namespaces.
(That two namespaces never see each other's data is the conformance suite's
``NamespaceTests``.)"""

from __future__ import annotations

import asyncio

from wfe_sql.migrations import MIGRATIONS
from wfe_sql.schema import SCHEMA_VERSION, tables_for
from wfe_sql.testing.base import DialectSuiteBase
from wfe_sql.testing.store import DialectStore, sample_instance

__all__ = ["NamespaceSuite"]

_NS = "dialect_ns"


class NamespaceSuite(DialectSuiteBase):
    """Tables of its own per namespace, created and migrated on their own."""

    async def test_a_namespace_gets_tables_and_indexes_of_its_own(
        self, dialect_store: DialectStore
    ) -> None:
        tables = tables_for(_NS)
        async with dialect_store.provider(namespace=_NS) as store:
            assert store.namespace == _NS
            await store.create_workflow(sample_instance("w1", idempotency_key="k"))
        assert "idempotency_key" in await dialect_store.column_names(tables.workflows.name)
        indexes = await dialect_store.index_names(tables.workflows.name)
        assert f"wfe_{_NS}__ix_workflows_runnable" in indexes
        assert f"wfe_{_NS}__ux_workflows_idempotency" in indexes
        assert await dialect_store.rows(f"SELECT id FROM {tables.workflows.name}") == [("w1",)]
        version = tables.schema_version.name
        assert await dialect_store.rows(f"SELECT max(version) FROM {version}") == [
            (SCHEMA_VERSION,)
        ]
        # the default namespace was never opened: none of its tables exist
        assert await dialect_store.column_names("wfe_workflows") == set()
        assert await dialect_store.column_names("wfe_schema_version") == set()

    async def test_the_default_namespace_keeps_the_tables_of_before(
        self, dialect_store: DialectStore
    ) -> None:
        async with dialect_store.provider() as store:
            assert store.namespace == "default"
            await store.create_workflow(sample_instance("w1"))
        assert await dialect_store.rows("SELECT id FROM wfe_workflows") == [("w1",)]
        assert await dialect_store.column_names(tables_for(_NS).workflows.name) == set()

    async def test_each_namespace_migrates_on_its_own(self, dialect_store: DialectStore) -> None:
        """A namespace one version behind is upgraded by opening it, and only it."""
        async with dialect_store.provider():
            pass
        async with dialect_store.provider(namespace=_NS):
            pass
        tables = tables_for(_NS)
        last = MIGRATIONS[-1]
        await dialect_store.run(
            f"DROP TABLE {tables.definitions.name}",
            f"DELETE FROM {tables.schema_version.name} WHERE version = {SCHEMA_VERSION}",
            f"INSERT INTO {tables.schema_version.name} (version, description, applied_at) "
            f"VALUES ({SCHEMA_VERSION - 1}, 'older', 0)",
        )
        assert last.version == SCHEMA_VERSION
        assert await dialect_store.column_names(tables.definitions.name) == set()
        async with dialect_store.provider(namespace=_NS) as store:
            await store.ensure_store_exists()
        assert "text" in await dialect_store.column_names(tables.definitions.name)
        assert "text" in await dialect_store.column_names(tables_for("default").definitions.name)
        assert await dialect_store.rows(
            f"SELECT version FROM {tables.schema_version.name} ORDER BY version"
        ) == [(SCHEMA_VERSION - 1,), (SCHEMA_VERSION,)]
        assert await dialect_store.rows("SELECT version FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]

    async def test_providers_create_one_namespace_concurrently(
        self, dialect_store: DialectStore
    ) -> None:
        providers = [
            dialect_store.provider(namespace=_NS) for _ in range(self.concurrent_providers)
        ]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.ensure_store_exists() for p in providers)), self.timeout
            )
        finally:
            for p in providers:
                await p.close()
        assert await dialect_store.rows(
            f"SELECT version FROM {tables_for(_NS).schema_version.name}"
        ) == [(SCHEMA_VERSION,)]
