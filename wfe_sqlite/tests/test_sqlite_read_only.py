"""Read-only SQLite stores (``read_only=True``, ``?mode=ro``): they read while another
connection holds the write lock, and never write -- no schema, no migration, no
journal-mode switch, no row."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from wfe_core.errors import ProviderUnavailable
from wfe_core.models import Event, ExecutionPointer, WorkflowInstance
from wfe_core.registry import accepts_read_only, open_store, supports_read_only

from wfe_sql import SCHEMA_VERSION, SchemaVersionError
from wfe_sqlite import (
    SqliteDriver,
    SqlitePersistenceProvider,
    parse_sqlite_url,
    provider_from_url,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "wfe.db"


def instance(**overrides: Any) -> WorkflowInstance:
    values: dict[str, Any] = {"workflow_definition_id": "read-only", "data": {"n": 1}}
    values.update(overrides)
    inst = WorkflowInstance(**values)
    inst.execution_pointers.append(ExecutionPointer(step_id=0))
    return inst


async def make_store(db: Path, *ids: str) -> None:
    """A store on ``db`` (read-write) holding workflows with these ids."""
    async with SqlitePersistenceProvider(db) as store:
        for wid in ids:
            await store.create_workflow(instance(id=wid))


def read_only(db: Path, **options: Any) -> SqlitePersistenceProvider:
    return SqlitePersistenceProvider(SqliteDriver(db, read_only=True, **options))


def raw(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return list(con.execute(sql).fetchall())


async def test_reads_while_another_connection_holds_the_write_lock(db: Path) -> None:
    """A read-only store reads the committed state while another connection holds the
    write lock; a read-write one cannot even open (its migration check needs the lock)."""
    await make_store(db, "a", "b")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM wfe_workflows")
    try:
        async with read_only(db, busy_timeout=0.2) as store:
            found = await store.query_workflows(skip=0, take=10)
            assert sorted(w.id for w in found) == ["a", "b"]
            assert (await store.get_workflow_instance("a")).data == {"n": 1}
        with pytest.raises(ProviderUnavailable, match="locked"):
            async with SqlitePersistenceProvider(db, busy_timeout=0.2):
                pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_writes_fail_clearly_and_change_nothing(db: Path) -> None:
    """Every write through a read-only store fails with ProviderUnavailable saying so."""
    await make_store(db, "a")
    async with read_only(db) as store:
        with pytest.raises(ProviderUnavailable, match="opened read-only"):
            await store.create_workflow(instance(id="b"))
        with pytest.raises(ProviderUnavailable, match="opened read-only"):
            await store.create_event(Event(event_name="e", event_key="k"))
        with pytest.raises(ProviderUnavailable, match="opened read-only"):
            await store.driver.execute("DELETE FROM wfe_workflows")
    assert raw(db, "SELECT id FROM wfe_workflows") == [("a",)]


async def test_the_connection_itself_is_read_only(db: Path) -> None:
    """Even a write slipped into a read session is refused by SQLite (``mode=ro``)."""
    await make_store(db, "a")
    async with read_only(db) as store, store.driver.read() as session:
        with pytest.raises(ProviderUnavailable, match="opened read-only"):
            await session.execute("DELETE FROM wfe_workflows")
    assert raw(db, "SELECT id FROM wfe_workflows") == [("a",)]


async def test_a_missing_file_is_not_created(db: Path) -> None:
    """Opening a file that does not exist read-only fails and creates nothing."""
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        async with read_only(db):
            pass
    assert os.listdir(db.parent) == []  # no database, no journal


async def test_a_file_without_the_schema_gets_none(db: Path) -> None:
    """Read-only never creates the wfe tables."""
    sqlite3.connect(db).close()
    with pytest.raises(ProviderUnavailable, match="holds no wfe store"):
        async with read_only(db):
            pass
    assert raw(db, "SELECT name FROM sqlite_master") == []


async def test_journal_mode_is_left_alone(db: Path) -> None:
    """Read-only never switches the journal mode (a read-write open sets WAL)."""
    await make_store(db, "a")
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA journal_mode = DELETE")
    async with read_only(db) as store:
        assert [w.id for w in await store.query_workflows(skip=0, take=10)] == ["a"]
    assert raw(db, "PRAGMA journal_mode") == [("delete",)]


async def test_schema_of_another_version_is_refused_unchanged(db: Path) -> None:
    """A newer schema asks for a newer wfe, an older one for a read-write open first;
    neither is changed."""
    await make_store(db, "a")
    with sqlite3.connect(db) as con:
        con.execute(
            "INSERT INTO wfe_schema_version (version, description, applied_at) "
            f"VALUES ({SCHEMA_VERSION + 1}, 'from the future', 0)"
        )
    with pytest.raises(SchemaVersionError, match="upgrade wfe"):
        async with read_only(db):
            pass
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM wfe_schema_version")
        con.execute(
            "INSERT INTO wfe_schema_version (version, description, applied_at) "
            f"VALUES ({SCHEMA_VERSION - 1}, 'old', 0)"
        )
    with pytest.raises(SchemaVersionError, match="cannot upgrade it"):
        async with read_only(db):
            pass
    assert raw(db, "SELECT version FROM wfe_schema_version") == [(SCHEMA_VERSION - 1,)]


async def test_url_mode_ro_and_the_registry(db: Path) -> None:
    """``?mode=ro`` and ``open_store(url, read_only=True)`` both open read-only."""
    await make_store(db, "a")
    assert parse_sqlite_url(f"sqlite:///{db}?mode=ro")[1] == {"read_only": True}
    assert parse_sqlite_url(f"sqlite:///{db}?mode=rwc")[1] == {"read_only": False}
    with pytest.raises(ValueError, match="not one of ro"):
        parse_sqlite_url(f"sqlite:///{db}?mode=rw")
    assert accepts_read_only(provider_from_url)
    assert supports_read_only(f"sqlite:///{db}")
    for components in (
        open_store(f"sqlite:///{db}?mode=ro"),
        open_store(f"sqlite:///{db}", read_only=True),
        provider_from_url(f"sqlite:///{db}", read_only=True),
    ):
        store = components.persistence
        assert isinstance(store, SqlitePersistenceProvider)
        assert store.driver.read_only
        assert "read-only" in repr(store.driver)
        async with store:
            with pytest.raises(ProviderUnavailable, match="opened read-only"):
                await store.create_workflow(instance())
    writable = open_store(f"sqlite:///{db}").persistence
    assert isinstance(writable, SqlitePersistenceProvider)
    assert not writable.driver.read_only
    await writable.close()


def test_memory_cannot_be_read_only() -> None:
    with pytest.raises(ValueError, match="in-memory SQLite database cannot be opened read-only"):
        SqliteDriver(":memory:", read_only=True)
