"""The base of every suite class: the fixtures a dialect provides or inherits, and the
flags saying what differs between dialects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.testing.store import DialectStore

__all__ = ["DialectSuiteBase"]


class DialectSuiteBase:
    """Fixtures and flags shared by the suite classes.

    A dialect's subclass **must** override the ``dialect_store`` fixture (a new, empty
    :class:`~wfe_sql.testing.DialectStore` per test, removed afterwards) and may set the
    flags below. ``anyio_backend`` is ``"asyncio"``; override it to run on another
    backend your driver supports.
    """

    pytestmark = pytest.mark.anyio

    timeout: ClassVar[float] = 15.0
    """Seconds a group of concurrent calls may take before the test fails."""

    group_commit: ClassVar[bool] = True
    """The driver group-commits its write batches (``SqlDriver.group_commit`` is a
    :class:`~wfe_sql.group_commit.GroupCommit`). False skips the group-commit tests."""

    batched_rows_are_one_statement: ClassVar[bool] = False
    """A batch step with many parameter rows (``executemany``) reaches the database as
    one statement (one round trip: PostgreSQL's pipelined ``executemany``) rather than
    one statement per row (SQLite's in-process loop)."""

    hints_skip_the_disk_wait: ClassVar[bool] = True
    """Lock and queue writes commit without waiting for the disk (their loss in a power
    failure does no harm); False when the dialect syncs them like checkpoints."""

    concurrent_providers: ClassVar[int] = 4
    """How many providers migrate one new store at the same moment."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The anyio backend the suite's tests run on."""
        return "asyncio"

    @pytest.fixture
    def dialect_store(self) -> DialectStore:
        """A new, empty store for one test: a dialect's subclass overrides this."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the dialect_store fixture "
            "(see wfe_sql.testing.DialectStore)"
        )

    @pytest.fixture
    async def provider(self, dialect_store: DialectStore) -> AsyncIterator[SqlPersistenceProvider]:
        """An opened persistence provider on the test's store."""
        async with dialect_store.provider() as opened:
            yield opened
