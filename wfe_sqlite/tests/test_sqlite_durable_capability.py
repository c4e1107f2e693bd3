"""Which SQLite stores declare ``Capability.DURABLE``: a database file does, a
``:memory:`` database (private to its connection) does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from wfe_core.capabilities import Capability
from wfe_core.registry import open_store

from wfe_sqlite import SqlitePersistenceProvider


def test_a_database_file_is_durable(tmp_path: Path) -> None:
    provider = SqlitePersistenceProvider(tmp_path / "wfe.db")
    assert Capability.DURABLE in provider.capabilities
    store = open_store(f"sqlite:///{tmp_path / 'other.db'}").persistence
    assert store is not None
    assert Capability.DURABLE in store.capabilities


def test_memory_is_not_durable() -> None:
    provider = SqlitePersistenceProvider(":memory:")
    assert provider.capabilities == {Capability.SCHEDULED_COMMANDS, Capability.PURGE}
    store = open_store("sqlite:///:memory:").persistence
    assert store is not None
    assert Capability.DURABLE not in store.capabilities
    fewer = SqlitePersistenceProvider(":memory:", capabilities=[Capability.PURGE])
    assert fewer.capabilities == {Capability.PURGE}


def test_memory_refuses_to_declare_durable() -> None:
    with pytest.raises(ValueError, match="not DURABLE"):
        SqlitePersistenceProvider(":memory:", capabilities=[Capability.DURABLE])


def test_durable_can_be_left_out_on_a_file(tmp_path: Path) -> None:
    provider = SqlitePersistenceProvider(tmp_path / "wfe.db", capabilities=[Capability.PURGE])
    assert provider.capabilities == {Capability.PURGE}
