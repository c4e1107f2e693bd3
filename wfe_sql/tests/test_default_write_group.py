"""The generic :meth:`SqlDriver.write_group` (the group-commit hook a dialect may use
instead of writing its own) keeps the rules of :mod:`wfe_sql.group_commit` on a real
SQLite file.

Both in-repo dialects override the hook, so here a SQLite driver is given the generic
default back (:class:`DefaultGroupDriver`): the shared dialect suite's group-commit
tests run on it, and direct tests check a group with a stale batch and a group whose
transaction fails, both through the hook alone and through the driver's
:class:`~wfe_sql.group_commit.GroupCommit`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from wfe_core.registry import StoreComponents
from wfe_sql.driver import BatchAborted, IntegrityViolation, Op, SqlDriver
from wfe_sql.group_commit import GroupCommit, Outcome
from wfe_sql.testing import DialectStore, GroupCommitSuite

from wfe_sqlite import (
    SqliteDriver,
    SqliteLockProvider,
    SqlitePersistenceProvider,
    SqliteQueueProvider,
)

TIMEOUT = 15.0


class DefaultGroupDriver(SqliteDriver):
    """SQLite connections whose group-commit transaction is :class:`SqlDriver`'s generic
    default (one :meth:`~SqlDriver.write` session, one step at a time) instead of
    SQLite's one-hop override. Its :class:`GroupCommit`, built in ``__init__`` on
    ``self.write_group``, therefore runs the default."""

    write_group = SqlDriver.write_group


def _commit_of(driver: SqlDriver) -> GroupCommit:
    commit = driver.group_commit
    assert isinstance(commit, GroupCommit)
    return commit


def _runs_the_default(driver: SqlDriver) -> bool:
    """Whether the driver's GroupCommit hands its groups to the generic default."""
    run = _commit_of(driver)._run
    return getattr(run, "__func__", None) is SqlDriver.write_group


# -- the shared dialect suite's group-commit tests -----------------------------------------


class DefaultGroupStore(DialectStore):
    """A database file in a test's temporary folder, opened with :class:`DefaultGroupDriver`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def provider(self, **options: Any) -> SqlitePersistenceProvider:
        provider = SqlitePersistenceProvider(self.driver(), **options)
        assert _runs_the_default(provider.driver)
        return provider

    def driver(self) -> DefaultGroupDriver:
        return DefaultGroupDriver(self.path)

    def components(self) -> StoreComponents:
        driver = self.driver()
        return StoreComponents(
            persistence=SqlitePersistenceProvider(driver),
            lock_provider=SqliteLockProvider(driver),
            queue_provider=SqliteQueueProvider(driver),
        )

    def _rows(self, sql: str) -> list[Any]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    async def column_names(self, table: str) -> set[str]:
        return {row[1] for row in self._rows(f"PRAGMA table_info({table})")}

    async def index_names(self, table: str) -> set[str]:
        return {row[1] for row in self._rows(f"PRAGMA index_list({table})")}

    @asynccontextmanager
    async def logged_provider(self) -> AsyncIterator[tuple[SqlitePersistenceProvider, list[str]]]:
        sent: list[str] = []
        async with self.provider() as provider:
            await provider.driver.on_writer(lambda conn: conn.set_trace_callback(sent.append))
            yield provider, sent

    async def checkpoint_waits_for_disk(self, persistence: Any) -> bool:
        return bool(await persistence.driver.pragma("synchronous") == 2)

    async def hint_waits_for_disk(self, persistence: Any) -> bool:
        return bool(await persistence.driver.pragma("synchronous") == 2)


class TestDefaultWriteGroupSuite(GroupCommitSuite):
    """The dialect suite's group-commit part on SQLite with the generic hook."""

    @pytest.fixture
    def dialect_store(self, tmp_path: Path) -> DefaultGroupStore:
        return DefaultGroupStore(tmp_path / "wfe.db")


# -- direct tests of the hook on a table of its own ----------------------------------------

pytestmark = pytest.mark.anyio

_SCHEMA = (
    "CREATE TABLE items (id TEXT PRIMARY KEY, revision INTEGER NOT NULL, value TEXT NOT NULL)",
    "CREATE TABLE notes (id TEXT PRIMARY KEY, item TEXT NOT NULL)",
    "INSERT INTO items VALUES ('a', 1, 'a1'), ('b', 1, 'b1'), ('c', 1, 'c1')",
    "INSERT INTO notes VALUES ('taken', 'seed')",
)
_SEEDED_ITEMS = [("a", 1, "a1"), ("b", 1, "b1"), ("c", 1, "c1")]
_SEEDED_NOTES = [("taken", "seed")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "group.db"


@pytest.fixture
async def driver(db_path: Path) -> AsyncIterator[DefaultGroupDriver]:
    opened = DefaultGroupDriver(db_path)
    assert _runs_the_default(opened)
    try:
        async with opened.write() as session:
            for sql in _SCHEMA:
                await session.execute(sql)
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def group_sizes(driver: DefaultGroupDriver) -> Iterator[list[int]]:
    """The size of every group the driver's GroupCommit hands to the default (a spy:
    each call goes through to the real transaction)."""
    commit = _commit_of(driver)
    sizes: list[int] = []
    real = commit._run

    async def spy(batches: list[Sequence[Op]], durable: bool) -> list[Outcome]:
        sizes.append(len(batches))
        return await real(batches, durable)

    commit._run = spy
    try:
        yield sizes
    finally:
        commit._run = real


def bump(item: str, revision: int, value: str) -> Op:
    """Set ``item``'s value if it is still at ``revision`` (a revision-checked write)."""
    return Op(
        "UPDATE items SET revision = revision + 1, value = ? WHERE id = ? AND revision = ?",
        (value, item, revision),
        expect=1,
    )


def note(note_id: str, item: str) -> Op:
    """Insert a note (its id is the primary key)."""
    return Op("INSERT INTO notes (id, item) VALUES (?, ?)", (note_id, item))


def file_rows(path: Path) -> tuple[list[Any], list[Any]]:
    """(items, notes) as another client of the file sees them."""
    conn = sqlite3.connect(path)
    try:
        items = conn.execute("SELECT id, revision, value FROM items ORDER BY id").fetchall()
        notes = conn.execute("SELECT id, item FROM notes ORDER BY id").fetchall()
        return items, notes
    finally:
        conn.close()


async def _gather(*calls: Any) -> list[Any]:
    """Run ``calls`` concurrently (so their batches queue up together); every outcome,
    errors included."""
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), TIMEOUT)


def _stale_group() -> list[Sequence[Op]]:
    return [
        [bump("a", 1, "a2"), note("n-a", "a")],
        [bump("b", 9, "stale"), note("n-b", "b")],  # b is at revision 1, not 9
        [bump("c", 1, "c2"), note("n-c", "c")],
    ]


async def test_the_default_skips_a_stale_batch_and_commits_the_others(
    driver: DefaultGroupDriver, db_path: Path
) -> None:
    outcomes = await driver.write_group(_stale_group(), True)

    assert outcomes[0] == [1, 1]
    stale = outcomes[1]
    assert isinstance(stale, BatchAborted)
    assert (stale.index, stale.rowcount) == (0, 0)
    assert outcomes[2] == [1, 1]
    items, notes = file_rows(db_path)
    assert items == [("a", 2, "a2"), ("b", 1, "b1"), ("c", 2, "c2")]
    # the stale batch's later step did not run either
    assert notes == [("n-a", "a"), ("n-c", "c"), ("taken", "seed")]


async def test_a_stale_batch_fails_alone_in_one_group_commit(
    driver: DefaultGroupDriver, db_path: Path, group_sizes: list[int]
) -> None:
    commit = _commit_of(driver)
    groups_before, batches_before = commit.groups, commit.batches

    outcomes = await _gather(*(driver.write_batch(ops) for ops in _stale_group()))

    assert outcomes[0] == [1, 1]
    assert isinstance(outcomes[1], BatchAborted)
    assert (outcomes[1].index, outcomes[1].rowcount) == (0, 0)
    assert outcomes[2] == [1, 1]
    assert group_sizes == [3]  # skipped inside the group, not re-run alone
    assert (commit.groups - groups_before, commit.batches - batches_before) == (1, 3)
    items, notes = file_rows(db_path)
    assert items == [("a", 2, "a2"), ("b", 1, "b1"), ("c", 2, "c2")]
    assert notes == [("n-a", "a"), ("n-c", "c"), ("taken", "seed")]


# A faulty middle batch, what it raises, and (index, rowcount) when that is a BatchAborted.
_FAULTS: dict[str, tuple[list[Op], type[Exception], tuple[int, int] | None]] = {
    "primary-key-clash": (
        [bump("b", 1, "b2"), note("taken", "b")],
        IntegrityViolation,
        None,
    ),
    "later-step-expect": (
        [note("n-b", "b"), bump("b", 9, "stale")],
        BatchAborted,
        (1, 0),
    ),
    "first-step-matched-too-many": (
        [Op("UPDATE items SET value = 'everything'", expect=1), note("n-b", "b")],
        BatchAborted,
        (0, 3),
    ),
}


def _faulty_group(fault: str) -> list[Sequence[Op]]:
    return [
        [bump("a", 1, "a2"), note("n-a", "a")],
        _FAULTS[fault][0],
        [bump("c", 1, "c2"), note("n-c", "c")],
    ]


def _check_fault(fault: str, error: object) -> None:
    _, kind, where = _FAULTS[fault]
    assert isinstance(error, kind), repr(error)
    if where is not None:
        assert isinstance(error, BatchAborted)
        assert (error.index, error.rowcount) == where


@pytest.mark.parametrize("fault", list(_FAULTS))
async def test_the_default_rolls_a_failing_group_back_whole(
    driver: DefaultGroupDriver, db_path: Path, fault: str
) -> None:
    with pytest.raises(_FAULTS[fault][1]) as caught:
        await driver.write_group(_faulty_group(fault), True)

    _check_fault(fault, caught.value)
    # nothing of the group is in the file: not the batch before the fault, nor the
    # faulty batch's own steps before its failure
    assert file_rows(db_path) == (_SEEDED_ITEMS, _SEEDED_NOTES)
    # and the driver is usable afterwards (the transaction is closed)
    assert await driver.write_group([[bump("a", 1, "a2")]], True) == [[1]]


@pytest.mark.parametrize("fault", list(_FAULTS))
async def test_a_failing_group_is_retried_batch_by_batch(
    driver: DefaultGroupDriver, db_path: Path, group_sizes: list[int], fault: str
) -> None:
    commit = _commit_of(driver)
    groups_before, batches_before = commit.groups, commit.batches

    outcomes = await _gather(*(driver.write_batch(ops) for ops in _faulty_group(fault)))

    assert outcomes[0] == [1, 1]
    _check_fault(fault, outcomes[1])
    assert outcomes[2] == [1, 1]
    # the group of three rolled back, then each batch ran alone: the good ones once each
    assert group_sizes == [3, 1, 1, 1]
    assert (commit.groups - groups_before, commit.batches - batches_before) == (2, 2)
    items, notes = file_rows(db_path)
    assert items == [("a", 2, "a2"), ("b", 1, "b1"), ("c", 2, "c2")]
    assert notes == [("n-a", "a"), ("n-c", "c"), ("taken", "seed")]
