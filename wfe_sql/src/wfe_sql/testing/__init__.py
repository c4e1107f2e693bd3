"""The SQL dialect suite: tests every SQL dialect of wfe must pass, written once.

A dialect package (``wfe_sqlite``, ``wfe_postgres``, yours) subclasses
:class:`SqlDialectSuite` (or just some of its parts) in a test module, overrides the
``dialect_store`` fixture to return a :class:`DialectStore` for a new, empty store, and
sets the flags that differ for its database::

    import pytest
    from wfe_sql.testing import DialectStore, SqlDialectSuite

    class TestMyDialect(SqlDialectSuite):
        batched_rows_are_one_statement = True

        @pytest.fixture
        async def dialect_store(self, tmp_path):
            store = MyStore(tmp_path)   # a DialectStore subclass
            yield store
            await store.remove()

The parts (each usable alone):

- :class:`GroupCommitSuite` -- concurrent checkpoints share transactions; a stale or
  failing batch fails alone;
- :class:`MigrationSuite` -- creation, upgrades, refusals, concurrent migrations;
- :class:`RoundTripSuite` -- statements per checkpoint; values through a reopened store;
- :class:`DurabilitySettingsSuite` -- ``DURABLE``; lock and queue writes never weaken
  checkpoints;
- :class:`NamespaceSuite` -- each namespace's tables, indexes and schema version are its
  own, created and migrated on their own.

This module needs pytest and anyio (``pip install wfe-sql[testing]``) and is not
imported by :mod:`wfe_sql`. Call ``pytest.register_assert_rewrite("wfe_sql.testing")``
in your ``conftest.py`` (before importing it) for pytest's detailed assertion messages.
"""

from wfe_sql.testing.base import DialectSuiteBase
from wfe_sql.testing.durability import DurabilitySettingsSuite
from wfe_sql.testing.group_commit import GroupCommitSuite
from wfe_sql.testing.migrations import MigrationSuite
from wfe_sql.testing.namespaces import NamespaceSuite
from wfe_sql.testing.round_trips import RoundTripSuite
from wfe_sql.testing.store import (
    DialectStore,
    change,
    gather_outcomes,
    sample_instance,
    subscription,
)

__all__ = [
    "DialectStore",
    "DialectSuiteBase",
    "DurabilitySettingsSuite",
    "GroupCommitSuite",
    "MigrationSuite",
    "NamespaceSuite",
    "RoundTripSuite",
    "SqlDialectSuite",
    "change",
    "gather_outcomes",
    "sample_instance",
    "subscription",
]


class SqlDialectSuite(
    GroupCommitSuite, MigrationSuite, RoundTripSuite, DurabilitySettingsSuite, NamespaceSuite
):
    """Every part of the dialect suite (see the module docstring)."""
