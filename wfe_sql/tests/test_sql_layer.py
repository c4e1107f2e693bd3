"""The dialect-neutral parts of wfe-sql: stored times, statements compiled for each
dialect (SQLite ``?`` and PostgreSQL ``$1``), the schema DDL and ``IN``-list padding.
The repositories themselves are proven by the conformance suite in each dialect package.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from wfe_sql.migrations import create_statements
from wfe_sql.schema import TABLE_PREFIX, workflows
from wfe_sql.statements import (
    IN_CHUNK,
    LockStatements,
    ProviderStatements,
    QueueStatements,
    padded,
)
from wfe_sql.times import EPOCH, from_micros, to_micros

from wfe_sql import SCHEMA_VERSION, SqlDriver, SqlSession, compile_statement, metadata


class CompileOnly(SqlDriver):
    """A driver that only compiles (no connections)."""

    def __init__(self, dialect: Dialect, insert: Any) -> None:
        super().__init__()
        self.dialect = dialect
        self.name = f"compile-only {dialect.name}"
        self._insert = insert

    def insert(self, table: Table) -> Any:
        return self._insert(table)

    def read(self) -> AbstractAsyncContextManager[SqlSession]:
        raise NotImplementedError

    def write(self) -> AbstractAsyncContextManager[SqlSession]:
        raise NotImplementedError

    def migration(self) -> AbstractAsyncContextManager[SqlSession]:
        raise NotImplementedError

    async def _close_connections(self) -> None:
        return None


DRIVERS = {
    "sqlite": lambda: CompileOnly(sqlite.dialect(paramstyle="qmark"), sqlite.insert),
    "postgresql": lambda: CompileOnly(
        postgresql.asyncpg.dialect(paramstyle="numeric_dollar"),  # type: ignore[no-untyped-call]
        postgresql.insert,
    ),
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest) -> CompileOnly:
    return DRIVERS[request.param]()


# --------------------------------------------------------------------------------------
# times
# --------------------------------------------------------------------------------------

aware = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), UTC]),
)


@given(aware)
def test_times_round_trip_exactly_at_utc(value: datetime) -> None:
    back = from_micros(to_micros(value, "t"))
    assert back == value
    assert back.utcoffset() == timedelta(0)


@given(aware, aware)
def test_stored_times_sort_like_the_instants(a: datetime, b: datetime) -> None:
    assert (to_micros(a, "a") < to_micros(b, "b")) == (a < b)


def test_stored_time_is_microseconds_since_the_epoch() -> None:
    assert to_micros(EPOCH, "t") == 0
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC), "t") == 1_000_005
    assert to_micros(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "t") == -1_000_000


def test_naive_times_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="next_execution must be a timezone-aware"):
        to_micros(datetime(2024, 1, 1), "next_execution")
    with pytest.raises(TypeError, match="t must be a datetime"):
        to_micros("2024-01-01", "t")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# compiled statements
# --------------------------------------------------------------------------------------


def placeholders(driver: CompileOnly, sql: str) -> int:
    if driver.dialect.paramstyle == "qmark":
        return sql.count("?")
    return len(set(re.findall(r"\$(\d+)", sql)))


def statements(driver: CompileOnly) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for group in (ProviderStatements(driver), LockStatements(driver), QueueStatements(driver)):
        for name, value in vars(group).items():
            if isinstance(value, tuple):
                out.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
            elif hasattr(value, "sql"):
                out.append((name, value))
    provider = ProviderStatements(driver)
    out.append(("workflows_in(4)", provider.workflows_in(4)))
    out.append(("pointers_in(2)", provider.pointers_in(2)))
    out.append(("delete_pointer_subscriptions(1)", provider.delete_pointer_subscriptions(1)))
    every = ("status", "definition_id", "reference", "created_from", "created_to")
    out.append(("query_workflows(all)", provider.query_workflows(every)))
    out.append(("query_workflows()", provider.query_workflows(())))
    return out


def test_every_statement_binds_only_named_parameters(driver: CompileOnly) -> None:
    """Each statement's positional arguments come from ``p_*`` names (plus constants
    SQLAlchemy made up), one per placeholder, for both paramstyles."""
    for name, stmt in statements(driver):
        wanted = {n: f"value of {n}" for n in stmt.names if n.startswith("p_")}
        args = stmt.args(wanted)
        assert len(args) == len(stmt.names), name
        assert placeholders(driver, stmt.sql) == len(stmt.names) or (
            driver.dialect.paramstyle != "qmark"
        ), name
        for n, value in zip(stmt.names, args, strict=True):
            if n.startswith("p_"):
                assert value == f"value of {n}", (name, n)


def test_repeated_and_constant_parameters() -> None:
    stmt = compile_statement(
        select(workflows.c.id)
        .where(workflows.c.id == bindparam("p_x"), workflows.c.reference == bindparam("p_x"))
        .limit(1),
        sqlite.dialect(paramstyle="qmark"),
    )
    assert stmt.sql.count("?") == len(stmt.names) == 4  # LIMIT ? OFFSET ?
    assert stmt.args({"p_x": "a"}) == ("a", "a", 1, 0)
    single = compile_statement(
        select(workflows.c.id).where(workflows.c.id == bindparam("p_id")),
        postgresql.asyncpg.dialect(paramstyle="numeric_dollar"),  # type: ignore[no-untyped-call]
    )
    assert "$1" in single.sql
    assert single.args({"p_id": "w"}) == ("w",)


def test_named_paramstyles_are_refused() -> None:
    with pytest.raises(ValueError, match="positional paramstyle"):
        compile_statement(
            select(workflows.c.id).where(workflows.c.id == bindparam("p_id")),
            sqlite.dialect(paramstyle="named"),
        )


def test_hot_queries_keep_the_literals_their_partial_indexes_need(driver: CompileOnly) -> None:
    s = ProviderStatements(driver)
    assert "'runnable'" in s.runnable_workflows.sql
    assert "revision + 1" in s.update_workflow.sql
    assert "ON CONFLICT (workflow_id, id) DO UPDATE" in s.upsert_pointer.sql
    assert "ordinal" not in s.upsert_pointer.sql.split("DO UPDATE", 1)[1]


def test_statements_are_compiled_once_per_dialect() -> None:
    first, second = DRIVERS["sqlite"](), DRIVERS["sqlite"]()
    a = first.cached("test-key", ProviderStatements)
    assert second.cached("test-key", ProviderStatements) is a
    assert DRIVERS["postgresql"]().cached("test-key", ProviderStatements) is not a


# --------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------


def test_every_table_and_index_is_prefixed() -> None:
    for table in metadata.sorted_tables:
        assert table.name.startswith(TABLE_PREFIX), table.name
        for index in table.indexes:
            assert str(index.name).startswith(TABLE_PREFIX), index.name
    assert SCHEMA_VERSION >= 1


def test_ddl_compiles_with_partial_indexes(driver: CompileOnly) -> None:
    ddl = create_statements(driver)
    tables = [s for s in ddl if s.lstrip().startswith("CREATE TABLE")]
    assert len(tables) == len(metadata.tables)
    assert all("IF NOT EXISTS" in s for s in ddl)
    runnable = next(s for s in ddl if "wfe_ix_workflows_runnable" in s)
    assert "WHERE" in runnable
    assert "runnable" in runnable.split("WHERE", 1)[1]
    events = next(s for s in ddl if "wfe_ix_events_runnable" in s)
    assert "is_processed" in events.split("WHERE", 1)[1]


def test_in_lists_are_padded_to_few_shapes() -> None:
    assert padded(["a"]) == ["a"]
    assert padded(["a", "b", "c"]) == ["a", "b", "c", "c"]
    assert len(padded([str(i) for i in range(IN_CHUNK)])) == IN_CHUNK
    shapes = {len(padded([str(i) for i in range(n)])) for n in range(1, IN_CHUNK + 1)}
    assert len(shapes) <= 9
