"""Versioned migrations on the real database: a new store is created once and recorded,
an older one is upgraded step by step keeping its rows, a newer one is refused
unchanged, and a failed or missing step changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from wfe_core.definitions.store import StoredDefinition
from wfe_core.errors import DuplicateIdempotencyKey, ProviderUnavailable
from wfe_core.models import Event
from wfe_core.schedules import Schedule

from wfe_sql.migrations import Migration, SchemaVersionError, migrate
from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.schema import SCHEMA_VERSION
from wfe_sql.testing.base import DialectSuiteBase
from wfe_sql.testing.store import DialectStore, sample_instance

__all__ = ["MigrationSuite"]

_VERSIONS = "SELECT version, description FROM wfe_schema_version ORDER BY version"
_DOWNGRADE_6_TO_5 = ("DROP TABLE wfe_definitions",)
_DOWNGRADE_5_TO_4 = (*_DOWNGRADE_6_TO_5, "ALTER TABLE wfe_events DROP COLUMN headers")

_DOWNGRADE_3_TO_2 = (
    *_DOWNGRADE_5_TO_4,
    "DROP INDEX wfe_ux_workflows_idempotency",
    "ALTER TABLE wfe_workflows DROP COLUMN idempotency_key",
)


class MigrationSuite(DialectSuiteBase):
    """Schema creation and upgrades (:mod:`wfe_sql.migrations`) on the dialect's store."""

    async def test_ensure_store_exists_is_idempotent_and_recorded(
        self, dialect_store: DialectStore, provider: SqlPersistenceProvider
    ) -> None:
        for _ in range(3):
            await provider.ensure_store_exists()
        async with dialect_store.provider() as again:
            await again.ensure_store_exists()
        assert await dialect_store.rows(_VERSIONS) == [
            (SCHEMA_VERSION, f"created at version {SCHEMA_VERSION}")
        ]

    async def test_providers_migrate_one_new_store_concurrently(
        self, dialect_store: DialectStore
    ) -> None:
        count = self.concurrent_providers
        providers = [dialect_store.provider() for _ in range(count)]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.ensure_store_exists() for p in providers)), self.timeout
            )
            ids = await asyncio.gather(
                *(p.create_workflow(sample_instance(f"w{n}")) for n, p in enumerate(providers))
            )
            assert sorted(ids) == sorted(f"w{n}" for n in range(count))
        finally:
            for p in providers:
                await p.close()
        assert await dialect_store.rows("SELECT version FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]

    async def test_a_newer_schema_is_refused_and_left_unchanged(
        self, dialect_store: DialectStore
    ) -> None:
        async with dialect_store.provider():
            pass
        newer = SCHEMA_VERSION + 41
        await dialect_store.run(
            "INSERT INTO wfe_schema_version (version, description, applied_at) "
            f"VALUES ({newer}, 'from the future', 0)"
        )
        before = await dialect_store.rows("SELECT * FROM wfe_schema_version ORDER BY version")
        refused = dialect_store.provider()
        with pytest.raises(SchemaVersionError) as raised:
            async with refused:
                pass
        message = str(raised.value)
        assert refused.driver.name in message  # which store
        assert f"version {newer}" in message
        assert f"up to {SCHEMA_VERSION}" in message
        assert "upgrade wfe" in message
        assert f"pip install -U wfe-sql {refused.driver.distribution}" in message
        assert isinstance(raised.value, ProviderUnavailable)
        assert (raised.value.stored, raised.value.supported) == (newer, SCHEMA_VERSION)
        assert await dialect_store.rows("SELECT * FROM wfe_schema_version ORDER BY version") == (
            before
        )

    async def test_an_upgrade_runs_each_missing_step_once(
        self, dialect_store: DialectStore
    ) -> None:
        async with dialect_store.provider() as store:
            await store.create_workflow(sample_instance("kept"))
        step = Migration(
            SCHEMA_VERSION + 1,
            "add a column",
            lambda driver: ["ALTER TABLE wfe_events ADD COLUMN note TEXT"],
        )
        driver = dialect_store.driver()
        try:
            target = SCHEMA_VERSION + 1
            assert await migrate(driver, target=target, migrations=[step]) == SCHEMA_VERSION
            assert await migrate(driver, target=target, migrations=[step]) == target
            with pytest.raises(SchemaVersionError, match="upgrade wfe"):
                await migrate(driver, target=SCHEMA_VERSION)
        finally:
            await driver.close()
        assert await dialect_store.rows(_VERSIONS) == [
            (SCHEMA_VERSION, f"created at version {SCHEMA_VERSION}"),
            (SCHEMA_VERSION + 1, "add a column"),
        ]
        assert "note" in await dialect_store.column_names("wfe_events")
        assert await dialect_store.rows("SELECT id FROM wfe_workflows") == [("kept",)]

    async def test_a_version_1_store_is_migrated_to_the_current_version(
        self, dialect_store: DialectStore
    ) -> None:
        """A store written by schema version 1 (no claim, control, set-aside or
        idempotency-key columns) gets them from migrations 2 and 3 and keeps its rows."""
        async with dialect_store.provider() as store:
            await store.create_workflow(sample_instance("old"))
        await dialect_store.run(
            *_DOWNGRADE_3_TO_2,
            "DROP INDEX wfe_ix_workflows_control",
            "ALTER TABLE wfe_workflows DROP COLUMN owner",
            "ALTER TABLE wfe_workflows DROP COLUMN lease_until",
            "ALTER TABLE wfe_workflows DROP COLUMN control",
            "ALTER TABLE wfe_events DROP COLUMN set_aside",
            "DELETE FROM wfe_schema_version",
            "INSERT INTO wfe_schema_version (version, description, applied_at) VALUES (1, 'v1', 0)",
        )
        assert "control" not in await dialect_store.column_names("wfe_workflows")
        async with dialect_store.provider() as store:
            lease = datetime.now(UTC) + timedelta(seconds=30)
            assert await store.claim_workflow("old", "me", lease)
            await store.request_control("old", "suspend")
            assert (await store.get_workflow_instance("old")).control_request == "suspend"
        assert await dialect_store.rows("SELECT max(version) FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]
        assert {"owner", "lease_until", "control"} <= await dialect_store.column_names(
            "wfe_workflows"
        )
        assert "set_aside" in await dialect_store.column_names("wfe_events")
        assert "wfe_ix_workflows_control" in await dialect_store.index_names("wfe_workflows")
        assert "idempotency_key" in await dialect_store.column_names("wfe_workflows")

    async def test_a_version_2_store_gets_unique_idempotency_keys(
        self, dialect_store: DialectStore
    ) -> None:
        """A store written by schema version 2 gets the idempotency-key column and its
        unique index from migration 3; its rows are kept with no key, and a duplicate
        key is refused afterwards."""
        async with dialect_store.provider() as store:
            await store.create_workflow(sample_instance("old"))
        await dialect_store.run(
            *_DOWNGRADE_3_TO_2,
            "DELETE FROM wfe_schema_version",
            "INSERT INTO wfe_schema_version (version, description, applied_at) VALUES (2, 'v2', 0)",
        )
        assert "idempotency_key" not in await dialect_store.column_names("wfe_workflows")
        async with dialect_store.provider() as store:
            assert (await store.get_workflow_instance("old")).idempotency_key is None
            first = sample_instance("k1")
            first.idempotency_key = "order-1"
            await store.create_workflow(first)
            second = sample_instance("k2")
            second.idempotency_key = "order-1"
            with pytest.raises(DuplicateIdempotencyKey) as refused:
                await store.create_workflow(second)
            assert refused.value.existing_id == "k1"
        assert await dialect_store.rows("SELECT max(version) FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]
        assert "wfe_ux_workflows_idempotency" in await dialect_store.index_names("wfe_workflows")

    async def test_a_version_3_store_gets_the_schedules_table(
        self, dialect_store: DialectStore
    ) -> None:
        """A store written by schema version 3 gets ``wfe_schedules`` (and its index)
        from migration 4, keeps its rows, and stores schedules afterwards."""
        async with dialect_store.provider() as store:
            await store.create_workflow(sample_instance("old"))
        await dialect_store.run(
            *_DOWNGRADE_5_TO_4,
            "DROP TABLE wfe_schedules",
            "DELETE FROM wfe_schema_version",
            "INSERT INTO wfe_schema_version (version, description, applied_at) VALUES (3, 'v3', 0)",
        )
        async with dialect_store.provider() as store:
            assert (await store.get_workflow_instance("old")).id == "old"
            made = Schedule(id="s", definition_id="d", every=timedelta(hours=1))
            made.next_fire_time = made.first_fire_time()
            await store.create_schedule(made)
            assert await store.get_schedule("s") == made
        assert await dialect_store.rows("SELECT max(version) FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]
        assert "wfe_ix_schedules_due" in await dialect_store.index_names("wfe_schedules")

    async def test_a_version_4_store_gets_event_headers(self, dialect_store: DialectStore) -> None:
        """A store written by schema version 4 gets ``wfe_events.headers`` from migration
        5; its events come back with no headers, new ones keep theirs."""
        async with dialect_store.provider() as store:
            await store.create_event(Event("e", "k", id="old"))
        await dialect_store.run(
            *_DOWNGRADE_5_TO_4,
            "DELETE FROM wfe_schema_version",
            "INSERT INTO wfe_schema_version (version, description, applied_at) VALUES (4, 'v4', 0)",
        )
        assert "headers" not in await dialect_store.column_names("wfe_events")
        async with dialect_store.provider() as store:
            assert (await store.get_event("old")).headers == {}
            await store.create_event(Event("e", "k", id="new", headers={"traceparent": "x"}))
            assert (await store.get_event("new")).headers == {"traceparent": "x"}
        assert await dialect_store.rows("SELECT max(version) FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]
        assert "headers" in await dialect_store.column_names("wfe_events")

    async def test_a_version_5_store_gets_the_definitions_table(
        self, dialect_store: DialectStore
    ) -> None:
        """A store written by schema version 5 gets ``wfe_definitions`` from migration 6,
        keeps its rows, and stores definition documents afterwards."""
        async with dialect_store.provider() as store:
            await store.create_workflow(sample_instance("old"))
        await dialect_store.run(
            *_DOWNGRADE_6_TO_5,
            "DELETE FROM wfe_schema_version",
            "INSERT INTO wfe_schema_version (version, description, applied_at) VALUES (5, 'v5', 0)",
        )
        async with dialect_store.provider() as store:
            assert (await store.get_workflow_instance("old")).id == "old"
            saved = StoredDefinition("d", 1, "json", '{"Id": "d"}')
            assert await store.save_definition(saved)
            assert (await store.get_definition("d")).text == saved.text
        assert await dialect_store.rows("SELECT max(version) FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]

    async def test_a_missing_migration_step_is_refused(self, dialect_store: DialectStore) -> None:
        async with dialect_store.provider():
            pass
        driver = dialect_store.driver()
        try:
            with pytest.raises(SchemaVersionError, match="no migration leads to version"):
                await migrate(driver, target=SCHEMA_VERSION + 2, migrations=[])
        finally:
            await driver.close()
        assert await dialect_store.rows("SELECT version FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]

    async def test_a_failed_migration_step_changes_nothing(
        self, dialect_store: DialectStore
    ) -> None:
        async with dialect_store.provider():
            pass
        broken = Migration(
            SCHEMA_VERSION + 1,
            "broken",
            lambda driver: ["ALTER TABLE wfe_events ADD COLUMN fine TEXT", "THIS IS NOT SQL"],
        )
        driver = dialect_store.driver()
        try:
            with pytest.raises(ProviderUnavailable):
                await migrate(driver, target=SCHEMA_VERSION + 1, migrations=[broken])
        finally:
            await driver.close()
        assert await dialect_store.rows("SELECT version FROM wfe_schema_version") == [
            (SCHEMA_VERSION,)
        ]
        assert "fine" not in await dialect_store.column_names("wfe_events")
