"""PostgreSQL's ``write_groups`` option (how many group-commit transactions run at
once), in code and in the URL, on a real server (a schema of its own per test). What
group commit does on every SQL dialect (shared transactions, a stale or failing batch
failing alone) is in test_postgres_dialect_suite.py (the wfe_sql.testing suite)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from wfe_core.models import WorkflowInstance
from wfe_sql.testing import change, gather_outcomes, sample_instance

from wfe_postgres import PostgresDriver, PostgresPersistenceProvider, parse_postgres_url
from wfe_postgres import provider_from_url as postgres_from_url

pytestmark = pytest.mark.anyio

SMALL: dict[str, Any] = {"min_size": 1, "max_size": 4}
TIMEOUT = 15.0
OFFLINE = "postgresql://wfe@127.0.0.1:1/nowhere"  # never connected to


# anyio_backend, url, schema and store: see conftest.py


@contextlib.asynccontextmanager
async def raw(url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection (another client of the database)."""
    conn = await asyncpg.connect(
        parse_postgres_url(url).dsn, server_settings={"search_path": f'"{schema}"'}
    )
    try:
        yield conn
    finally:
        await conn.close()


async def rows(url: str, schema: str, sql: str) -> list[tuple[Any, ...]]:
    async with raw(url, schema) as conn:
        return [tuple(r) for r in await conn.fetch(sql)]


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def stats(store: PostgresPersistenceProvider) -> tuple[int, int]:
    """(groups, batches) the driver's group commit wrote so far."""
    groups = store.driver._groups
    return groups.groups, groups.batches


async def created(store: PostgresPersistenceProvider, *ids: str) -> list[WorkflowInstance]:
    """Create instances with these ids; return them as loaded back from the store."""
    await asyncio.gather(*(store.create_workflow(sample_instance(i)) for i in ids))
    return [await store.get_workflow_instance(i) for i in ids]


# --------------------------------------------------------------------------------------
# the write_groups option
# --------------------------------------------------------------------------------------


def test_write_groups_defaults_to_three_capped_by_the_pool() -> None:
    driver = PostgresDriver(OFFLINE)
    assert driver.write_groups == 3
    assert driver._groups.max_groups == 3
    small = PostgresDriver(OFFLINE, max_size=2)
    assert small.write_groups == 3
    assert small._groups.max_groups == 2  # never more transactions than connections


@pytest.mark.parametrize("bad", [0, -1])
def test_write_groups_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="write_groups must be positive"):
        PostgresDriver(OFFLINE, write_groups=bad)
    with pytest.raises(ValueError, match="write_groups must be positive"):
        PostgresDriver(with_query(OFFLINE, f"write_groups={bad}"))


@pytest.mark.parametrize("bad", [1.5, True, "2"])
def test_write_groups_must_be_a_whole_number(bad: Any) -> None:
    with pytest.raises(TypeError, match="write_groups must be a whole number"):
        PostgresDriver(OFFLINE, write_groups=bad)


def test_write_groups_in_the_url() -> None:
    parsed = parse_postgres_url(with_query(OFFLINE, "write_groups=2"))
    assert parsed.options == {"write_groups": 2}
    assert "write_groups" not in parsed.dsn
    driver = PostgresDriver(with_query(OFFLINE, "write_groups=2"))
    assert driver.write_groups == 2
    assert driver._groups.max_groups == 2
    # a keyword argument wins over the URL
    assert PostgresDriver(with_query(OFFLINE, "write_groups=2"), write_groups=5).write_groups == 5
    with pytest.raises(ValueError, match="write_groups"):
        parse_postgres_url(with_query(OFFLINE, "write_groups=many"))
    store = postgres_from_url(with_query(OFFLINE, "write_groups=1"))
    assert isinstance(store.persistence, PostgresPersistenceProvider)
    assert store.persistence.driver.write_groups == 1
    assert store.persistence.driver._groups.max_groups == 1


async def test_a_store_from_a_url_with_write_groups_commits_in_groups(
    url: str, schema: str
) -> None:
    components = postgres_from_url(with_query(url, "write_groups=2"), schema=schema, **SMALL)
    persistence = components.persistence
    assert isinstance(persistence, PostgresPersistenceProvider)
    assert persistence.driver.write_groups == 2
    assert persistence.driver._groups.max_groups == 2
    async with persistence:
        ids = [f"u-{i}" for i in range(10)]
        loaded = await created(persistence, *ids)
        for n, inst in enumerate(loaded):
            change(inst, n)
        groups_before, batches_before = stats(persistence)
        assert (
            await gather_outcomes(TIMEOUT, *(persistence.persist_workflow(i) for i in loaded))
            == [None] * 10
        )
        groups, batches = stats(persistence)
        assert batches - batches_before == 10
        assert groups - groups_before < 10
        assert await rows(url, schema, "SELECT id, revision FROM wfe_workflows ORDER BY id") == [
            (i, 2) for i in sorted(ids)
        ]
