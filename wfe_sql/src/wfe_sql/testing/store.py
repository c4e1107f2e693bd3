"""What a dialect gives the suite: :class:`DialectStore`, one empty store per test and
the handful of things only the dialect knows how to do with it; and the helpers the
suite's tests share (sample instances, bounded waits).

This module does not import pytest: a dialect may build its :class:`DialectStore` in
code that is not a test.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any

from wfe_core.models import EventSubscription, ExecutionPointer, WorkflowInstance
from wfe_core.registry import StoreComponents

from wfe_sql.driver import SqlDriver
from wfe_sql.provider import SqlPersistenceProvider

__all__ = ["DialectStore", "change", "gather_outcomes", "sample_instance", "subscription"]


class DialectStore(ABC):
    """One empty store for one test, and what the suite needs of the dialect to use it.

    A dialect's suite subclass returns one from its ``dialect_store`` fixture (a new,
    empty store per test: a temporary file, a schema of its own, ...) and removes the
    store after the test. Every provider, driver and component set the suite gets from
    it is new and unopened; the suite opens and closes them itself.

    The abstract methods are the dialect's part; :meth:`rows` and :meth:`run` are built
    on :meth:`driver` and need no override.
    """

    # -- opening the store ---------------------------------------------------------------

    @abstractmethod
    def provider(self, **options: Any) -> SqlPersistenceProvider:
        """A new, unopened persistence provider on the store with connections of its
        own (another process, as far as the store can tell). ``options`` are the
        provider's keyword arguments the suite may pass (``clock``, ``command_lease``)."""

    @abstractmethod
    def driver(self) -> SqlDriver:
        """A new driver on the store that is neither opened nor migrated: the suite runs
        plain SQL and :func:`~wfe_sql.migrations.migrate` through it, then closes it."""

    @abstractmethod
    def components(self) -> StoreComponents:
        """Persistence, lock and queue providers sharing one driver, as the store's URL
        opens them (all three set, none opened)."""

    # -- looking inside ------------------------------------------------------------------

    @abstractmethod
    async def column_names(self, table: str) -> set[str]:
        """The names of the columns of ``table`` in the store."""

    @abstractmethod
    async def index_names(self, table: str) -> set[str]:
        """The names of the indexes on ``table`` in the store."""

    @abstractmethod
    def logged_provider(
        self,
    ) -> AbstractAsyncContextManager[tuple[SqlPersistenceProvider, list[str]]]:
        """An opened provider on the store and a list that receives, from then on, the
        text of every statement the provider sends for its writes, as the database gets
        them: a statement the driver sends once for many parameter rows appears once
        when the database gets it once (see ``batched_rows_are_one_statement``).
        Statements that only set session options (``PRAGMA``, ``SET``) may appear; the
        suite ignores them."""

    # -- durability ----------------------------------------------------------------------

    @abstractmethod
    async def checkpoint_waits_for_disk(self, persistence: SqlPersistenceProvider) -> bool:
        """Whether a checkpoint of ``persistence`` commits only once it is on disk
        (called right after a checkpoint: SQLite reports the ``synchronous`` level that
        checkpoint ran at, PostgreSQL the ``synchronous_commit`` of its connections)."""

    @abstractmethod
    async def hint_waits_for_disk(self, persistence: SqlPersistenceProvider) -> bool:
        """Whether a lock or queue write of the store sharing ``persistence``'s driver
        commits only once it is on disk (called right after such a write)."""

    # -- built on the above --------------------------------------------------------------

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of ``sql`` (plain SQL without parameters), read by a new driver:
        what another client of the store sees."""
        driver = self.driver()
        try:
            return [tuple(row) for row in await driver.fetchall(sql)]
        finally:
            await driver.close()

    async def run(self, *statements: str) -> None:
        """Run ``statements`` (plain SQL without parameters) in one transaction of a new
        driver, as an outside client or an older wfe would."""
        driver = self.driver()
        try:
            async with driver.write() as session:
                for sql in statements:
                    await session.execute(sql)
        finally:
            await driver.close()


def sample_instance(workflow_id: str, **overrides: Any) -> WorkflowInstance:
    """An instance with id ``workflow_id``, data ``{"n": 0}`` and one pointer."""
    values: dict[str, Any] = {
        "workflow_definition_id": "dialect-suite",
        "id": workflow_id,
        "data": {"n": 0},
    }
    values.update(overrides)
    inst = WorkflowInstance(**values)
    inst.execution_pointers.append(ExecutionPointer(step_id=0, persistence_data={"n": 0}))
    return inst


def subscription(owner: WorkflowInstance, sub_id: str, key: str) -> EventSubscription:
    """A subscription with id ``sub_id`` of ``owner``'s first pointer to event ``key``."""
    return EventSubscription(
        workflow_id=owner.id,
        step_id=0,
        execution_pointer_id=owner.execution_pointers[0].id,
        event_name="dialect-suite-event",
        event_key=key,
        id=sub_id,
    )


def change(inst: WorkflowInstance, n: int) -> None:
    """A checkpoint's worth of changes: data, header and the first pointer."""
    inst.data = {"n": n}
    inst.description = f"checkpoint {n}"
    inst.execution_pointers[0].persistence_data = {"n": n}


async def gather_outcomes(timeout: float, *calls: Awaitable[Any]) -> list[Any]:
    """Run ``calls`` concurrently (started in one loop iteration, so their writes queue
    up together); their results or exceptions, in order, within ``timeout`` seconds."""
    return list(await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout))
