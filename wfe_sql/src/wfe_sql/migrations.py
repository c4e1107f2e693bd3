"""Versioned schema migrations, run by ``ensure_store_exists()``.

A store records every version applied to it in ``wfe_schema_version`` (each namespace
in its own: ``wfe_<ns>__schema_version``, see :func:`wfe_sql.schema.tables_for`; a
namespace's tables are created the first time a driver opens it). :func:`migrate`
runs inside :meth:`SqlDriver.migration` -- one transaction that excludes every other
migration of the store, in this process or any other -- and then:

- creates the current schema (:data:`~wfe_sql.schema.SCHEMA_VERSION`) in an empty store;
- applies, in order, the :class:`Migration` steps between the store's version and the
  current one;
- does nothing (one read) when the store is current;
- refuses, with :class:`SchemaVersionError` and without changing anything, a store
  written by a newer wfe.

So it is idempotent and safe when several processes start at once: the first one
migrates, the others wait for its transaction and then find the store current.

Adding a version: bump ``SCHEMA_VERSION``, change the tables in :mod:`wfe_sql.schema`
(what a new store gets) and append a :class:`Migration` producing the same change for an
existing store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.schema import CreateIndex, CreateTable
from wfe_core.errors import ProviderUnavailable

from wfe_sql.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from wfe_sql.driver import SqlDriver

__all__ = [
    "MIGRATIONS",
    "Migration",
    "SchemaVersionError",
    "create_statements",
    "migrate",
    "stored_version",
]


@dataclass(frozen=True)
class Migration:
    """The step from ``version - 1`` to ``version``: ``upgrade(driver)`` returns the SQL
    statements (for that driver's dialect) to run, in order."""

    version: int
    description: str
    upgrade: Callable[[SqlDriver], Sequence[str]]


def _add_columns(
    *columns: tuple[str, str], indexes: Sequence[str] = ()
) -> Callable[[SqlDriver], Sequence[str]]:
    """A migration adding ``(table, column)`` pairs and then the named indexes, as
    declared in :mod:`wfe_sql.schema` (names without the namespace's prefix: ``"workflows"``,
    ``"ix_workflows_control"``)."""

    def upgrade(driver: SqlDriver) -> list[str]:
        out = []
        tables = driver.tables
        for table_suffix, column_name in columns:
            table = tables.metadata.tables[tables.prefix + table_suffix]
            kind = table.c[column_name].type.compile(dialect=driver.dialect)
            out.append(f"ALTER TABLE {table.name} ADD COLUMN {column_name} {kind}")
        wanted = {tables.prefix + name for name in indexes}
        for table in tables.metadata.sorted_tables:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                if index.name in wanted:
                    ddl = CreateIndex(index, if_not_exists=True).compile(dialect=driver.dialect)
                    out.append(ddl.string)
        return out

    return upgrade


def _create_tables(*names: str) -> Callable[[SqlDriver], Sequence[str]]:
    """A migration creating the named tables (without the namespace's prefix) and their
    indexes, as declared in :mod:`wfe_sql.schema` (``IF NOT EXISTS``)."""

    def upgrade(driver: SqlDriver) -> list[str]:
        out = []
        tables = driver.tables
        for name in names:
            table = tables.metadata.tables[tables.prefix + name]
            ddl = CreateTable(table, if_not_exists=True).compile(dialect=driver.dialect)
            out.append(ddl.string)
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                idx = CreateIndex(index, if_not_exists=True).compile(dialect=driver.dialect)
                out.append(idx.string)
        return out

    return upgrade


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "ownership fencing (workflows.owner, lease_until), durable control requests "
        "(workflows.control), set-aside events (events.set_aside)",
        _add_columns(
            ("workflows", "owner"),
            ("workflows", "lease_until"),
            ("workflows", "control"),
            ("events", "set_aside"),
            indexes=("ix_workflows_control",),
        ),
    ),
    Migration(
        3,
        "idempotent starts (workflows.idempotency_key, unique per definition id)",
        _add_columns(
            ("workflows", "idempotency_key"),
            indexes=("ux_workflows_idempotency",),
        ),
    ),
    Migration(4, "schedules (the wfe_schedules table)", _create_tables("schedules")),
    Migration(5, "event propagation headers (events.headers)", _add_columns(("events", "headers"))),
    Migration(6, "definitions as data (the wfe_definitions table)", _create_tables("definitions")),
)
"""The upgrade steps of existing stores, oldest first."""


class SchemaVersionError(ProviderUnavailable):
    """The store's schema is newer than this code understands (upgrade wfe), or no
    migration path leads from its version to the current one."""

    def __init__(self, message: str, stored: int, supported: int) -> None:
        super().__init__(message)
        self.stored = stored
        self.supported = supported


def _wfe_sql_version() -> str:
    try:
        return _dist_version("wfe-sql")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def create_statements(driver: SqlDriver) -> list[str]:
    """``CREATE TABLE`` / ``CREATE INDEX`` (``IF NOT EXISTS``) for the current schema of
    the driver's namespace."""
    out: list[str] = []
    for table in driver.tables.metadata.sorted_tables:
        out.append(CreateTable(table, if_not_exists=True).compile(dialect=driver.dialect).string)
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(
                CreateIndex(index, if_not_exists=True).compile(dialect=driver.dialect).string
            )
    return out


def _version_table_ddl(driver: SqlDriver) -> str:
    table = driver.tables.schema_version
    return CreateTable(table, if_not_exists=True).compile(dialect=driver.dialect).string


async def stored_version(driver: SqlDriver) -> int:
    """The store's schema version (0 for a store wfe never wrote to)."""
    async with driver.migration() as session:
        await session.execute(_version_table_ddl(driver))
        sql = driver.compile(select(func.max(driver.tables.schema_version.c.version))).sql
        row = await session.fetchone(sql)
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(
    driver: SqlDriver,
    *,
    target: int = SCHEMA_VERSION,
    migrations: Sequence[Migration] = MIGRATIONS,
    create: Callable[[SqlDriver], Sequence[str]] = create_statements,
) -> int:
    """Bring the store behind ``driver`` to schema version ``target``; return the version
    it was at (0: it was empty). See the module docstring."""
    schema_version = driver.tables.schema_version
    version_sql = driver.compile(select(func.max(schema_version.c.version))).sql
    record = driver.compile(
        insert(schema_version).values(
            version=bindparam("p_version"),
            description=bindparam("p_description"),
            applied_at=bindparam("p_applied_at"),
        )
    )
    async with driver.migration() as session:
        await session.execute(_version_table_ddl(driver))
        row = await session.fetchone(version_sql)
        current = int(row[0]) if row is not None and row[0] is not None else 0
        if current > target:
            raise SchemaVersionError(
                f"the store {driver.name} has wfe schema version {current}, but this wfe "
                f"(wfe-sql {_wfe_sql_version()}) only understands versions up to {target}. "
                "It was written by a newer wfe: upgrade wfe (e.g. `pip install -U wfe-sql "
                f"{driver.distribution}`) to use it. Nothing was changed.",
                current,
                target,
            )
        if current == target:
            return current
        now = time.time_ns() // 1000
        if current == 0:
            for sql in create(driver):
                await session.execute(sql)
            await session.execute(
                record.sql,
                record.args(
                    {
                        "p_version": target,
                        "p_description": f"created at version {target}",
                        "p_applied_at": now,
                    }
                ),
            )
            return current
        steps = {m.version: m for m in migrations}
        for version in range(current + 1, target + 1):
            step = steps.get(version)
            if step is None:
                raise SchemaVersionError(
                    f"the store {driver.name} has wfe schema version {current} and no "
                    f"migration leads to version {version}; this is a bug in wfe-sql "
                    f"{_wfe_sql_version()}. Nothing was changed.",
                    current,
                    target,
                )
            for sql in step.upgrade(driver):
                await session.execute(sql)
            await session.execute(
                record.sql,
                record.args(
                    {
                        "p_version": version,
                        "p_description": step.description,
                        "p_applied_at": now,
                    }
                ),
            )
        return current
