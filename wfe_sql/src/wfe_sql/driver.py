"""The thin async driver interface every SQL dialect implements.

The shared repository code (:class:`~wfe_sql.provider.SqlPersistenceProvider`, the lock
and queue providers) never talks to SQLAlchemy at run time: SQLAlchemy Core builds each
statement once, :func:`compile_statement` turns it into the dialect's SQL text plus the
order of its parameters, and a :class:`SqlDriver` runs that text on the dialect's own
async driver (aiosqlite, asyncpg, ...). A dialect package supplies only a driver:

- :attr:`SqlDriver.dialect` -- the SQLAlchemy dialect to compile for (its paramstyle
  must be positional: ``?``, ``$1``, ``%s``);
- :meth:`SqlDriver.insert` -- an ``INSERT`` construct with ``on_conflict_do_update`` /
  ``on_conflict_do_nothing`` (``sqlalchemy.dialects.sqlite.insert`` and
  ``sqlalchemy.dialects.postgresql.insert`` both qualify);
- sessions: :meth:`SqlDriver.read` (a consistent snapshot for several statements),
  :meth:`SqlDriver.write` (one transaction, committed on a clean exit and rolled back on
  an exception) and :meth:`SqlDriver.migration` (a write transaction that also excludes
  every other migration of the store, across processes);
- one-statement shortcuts (:meth:`SqlDriver.execute`, :meth:`SqlDriver.fetchall`, ...)
  that a dialect may run without an explicit transaction;
- optionally, group commit: :meth:`SqlDriver.write_batch` submitting to a
  :class:`~wfe_sql.group_commit.GroupCommit` built on :meth:`SqlDriver.write_group`
  (which a dialect overrides to write a group in as few round trips as it can).

Drivers raise only :mod:`wfe_core.errors` types: :class:`IntegrityViolation` for a
broken unique / primary-key constraint, :class:`~wfe_core.errors.ProviderUnavailable`
(with the driver's exception chained) for everything else.

Sharing: several components (persistence, lock, queue) may share one driver, so they
share its connections. Each calls :meth:`SqlDriver.attach` before use and
:meth:`SqlDriver.detach` when done; the connections close when the last one detaches
and open again lazily when a component attaches again.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Generic, Protocol, TypeVar, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from wfe_core.errors import WfeError
from wfe_core.namespaces import DEFAULT_NAMESPACE, resolve_namespace

from wfe_sql.schema import SqlTables, tables_for

__all__ = [
    "BatchAborted",
    "DriverComponent",
    "IntegrityViolation",
    "Op",
    "Row",
    "SqlDriver",
    "SqlSession",
    "Statement",
    "compile_statement",
]

Row = Sequence[Any]
"""A result row: column values in the order the statement selects them."""


class IntegrityViolation(WfeError):
    """A statement broke a unique or primary-key constraint (raised by drivers; the
    providers turn it into the error their contract names)."""


class BatchAborted(WfeError):
    """A batch step's rowcount was not the one it expected; the transaction was rolled
    back (raised by :meth:`SqlDriver.write_batch`, handled by the providers)."""

    def __init__(self, index: int, rowcount: int) -> None:
        super().__init__(f"batch step {index} matched {rowcount} rows; rolled back")
        self.index = index
        self.rowcount = rowcount


@dataclass(frozen=True, slots=True)
class Op:
    """One step of a batch: a statement run once with ``args``, or once per row of
    ``rows`` (``executemany``). ``expect`` aborts the batch (rolling it back) unless the
    statement matched exactly that many rows; ``fetch`` returns its rows instead of
    its rowcount."""

    sql: str
    args: Sequence[Any] = ()
    rows: Sequence[Sequence[Any]] | None = None
    expect: int | None = None
    fetch: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement compiled once for one dialect: its SQL text and the names of its
    positional parameters, in order (a name may repeat)."""

    sql: str
    names: tuple[str, ...]
    _getter: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``values`` (a mapping of parameter name to value)."""
        if not self.names:
            return ()
        got = self._getter(values)
        return got if len(self.names) > 1 else (got,)


def compile_statement(statement: ClauseElement, dialect: Dialect) -> Statement:
    """Compile a SQLAlchemy Core statement for ``dialect`` into a :class:`Statement`.

    The dialect's paramstyle must be positional (``qmark``, ``numeric``,
    ``numeric_dollar`` or ``format``).
    """
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    names = tuple(compiled.positiontup or ())
    if compiled.binds and not names:
        raise ValueError(
            f"dialect {dialect.name} compiles to named parameters "
            f"({dialect.paramstyle}); wfe_sql needs a positional paramstyle"
        )
    # Parameters SQLAlchemy made up for literals in the statement (``LIMIT 1``, ``SET x =
    # NULL``) keep their values; only the ``bindparam(name)`` ones without a value are
    # the caller's to give.
    consts = {
        name: bind.effective_value
        for name, bind in compiled.binds.items()
        if not bind.required and name in names
    }
    getter: Callable[[Mapping[str, Any]], Any]
    if not names:
        getter = dict
    elif consts:
        pick = itemgetter(*names)

        def getter(values: Mapping[str, Any]) -> Any:
            return pick({**consts, **values})

    else:
        getter = itemgetter(*names)
    return Statement(compiled.string, names, getter)


class SqlSession(Protocol):
    """One connection inside a transaction (or snapshot) opened by a :class:`SqlDriver`."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it matched (``rowcount``)."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        ...

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run one statement and return every row it produced."""
        ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """Run one statement and return its first row, or None."""
        ...


class SqlDriver(ABC):
    """Connections of one dialect to one store (see the module docstring)."""

    dialect: Dialect
    """The SQLAlchemy dialect statements are compiled for."""

    name: str
    """What the store is, for messages (a path or a URL without its password)."""

    group_commit: Any = None
    """The driver's :class:`~wfe_sql.group_commit.GroupCommit` when its write batches are
    group-committed (its ``groups`` / ``batches`` counters are statistics), else None."""

    namespace: str = DEFAULT_NAMESPACE
    """The namespace (:mod:`wfe_core.namespaces`) whose tables this driver's components
    use; set by ``__init__``."""

    tables: SqlTables = tables_for(DEFAULT_NAMESPACE)
    """The tables of :attr:`namespace` (:func:`wfe_sql.schema.tables_for`)."""

    def __init__(self, *, namespace: str | None = None, url_namespace: str | None = None) -> None:
        """``namespace`` (a keyword argument) wins, else ``url_namespace`` (``?namespace=``
        of the store's URL), else ``WFE_NAMESPACE``, else ``"default"``."""
        self.namespace = resolve_namespace(namespace, from_url=url_namespace)
        self.tables = tables_for(self.namespace)
        self._attached: set[int] = set()
        self._schema_ready = False
        self._schema_lock: asyncio.Lock | None = None
        self._statements: dict[Hashable, Any] = {}

    # -- dialect specifics ---------------------------------------------------------------

    @abstractmethod
    def insert(self, table: Table) -> Any:
        """An ``INSERT`` into ``table`` that supports ``on_conflict_do_update`` and
        ``on_conflict_do_nothing`` (with ``.excluded``), as SQLite's and PostgreSQL's do."""

    @property
    def distribution(self) -> str:
        """The distribution that ships this driver (``wfe-sqlite``, ``wfe-postgres``), for
        upgrade hints in messages; by default the name of the driver's top-level package
        with ``_`` as ``-``. Override when that is not the distribution's name."""
        return type(self).__module__.split(".", 1)[0].replace("_", "-")

    @property
    def dialect_key(self) -> Hashable:
        """Statements compiled for one driver are reused by every driver with the same key."""
        return (type(self).__qualname__, self.dialect.name, self.dialect.paramstyle)

    # -- sessions ------------------------------------------------------------------------

    @abstractmethod
    def read(self) -> AbstractAsyncContextManager[SqlSession]:
        """A session whose statements all see one consistent snapshot of the store."""

    @abstractmethod
    def write(self) -> AbstractAsyncContextManager[SqlSession]:
        """A write transaction: committed when the block exits normally, rolled back when
        it raises (the exception then propagates)."""

    @abstractmethod
    def migration(self) -> AbstractAsyncContextManager[SqlSession]:
        """A write transaction that also excludes every other migration of this store,
        in any process (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock)."""

    # -- batches (override for speed: one round trip) -----------------------------------

    async def write_batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` in one write transaction; return each step's rowcount (its rows
        for ``fetch`` steps, the number of rows given for ``rows`` steps). Raises
        :class:`BatchAborted` (everything rolled back) when a step's ``expect`` is not
        met. A dialect may run the whole batch in one round trip.
        """
        async with self.write() as session:
            return await _run_session(session, ops)

    async def read_batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run reading ``ops`` on one snapshot; return each step's rows (or rowcount)."""
        async with self.read() as session:
            return await _run_session(session, ops)

    async def write_group(
        self, batches: list[Sequence[Op]], durable: bool
    ) -> list[list[Any] | BatchAborted]:
        """Run several write batches in one transaction: the group-commit hook a driver
        hands to :class:`~wfe_sql.group_commit.GroupCommit` (``GroupCommit(driver.write_group)``)
        when its :meth:`write_batch` submits batches there.

        The rules (see :mod:`wfe_sql.group_commit`): the batches run in order and commit
        once at the end; a batch whose **first** step has an ``expect`` and matched **no**
        row is skipped -- its outcome is a :class:`BatchAborted` -- and the others go on;
        anything else that fails rolls the whole transaction back and raises. Returns one
        outcome per batch: its step results (as :meth:`write_batch` returns them) or the
        skip. ``durable`` is False when no batch of the group needs its commit synced
        (lock leases, queue hints): a driver may then skip the wait for the disk.

        The default runs the batches one step at a time on one :meth:`write` session and
        always syncs. A dialect overrides this to write a group in fewer round trips or
        hops (SQLite: on the writer's thread in one hop; PostgreSQL: pipelined steps).
        """
        outcomes: list[list[Any] | BatchAborted] = []
        async with self.write() as session:
            for ops in batches:
                outcomes.append(await _run_group_batch(session, ops))
        return outcomes

    # -- one-statement shortcuts (override for speed) ------------------------------------

    async def execute(self, sql: str, args: Sequence[Any] = (), *, durable: bool = True) -> int:
        """Run one writing statement in a transaction of its own; return its rowcount.

        ``durable=False`` marks a write whose loss in a power failure does no harm (lock
        leases, queue hints): a driver may then skip waiting for the disk.
        """
        async with self.write() as session:
            return await session.execute(sql, args)

    async def execute_returning(
        self, sql: str, args: Sequence[Any] = (), *, durable: bool = True
    ) -> list[Row]:
        """Run one writing statement with ``RETURNING`` in a transaction of its own."""
        async with self.write() as session:
            return await session.fetchall(sql, args)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run one reading statement; return every row."""
        async with self.read() as session:
            return await session.fetchall(sql, args)

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """Run one reading statement; return its first row or None."""
        async with self.read() as session:
            return await session.fetchone(sql, args)

    # -- lifecycle -----------------------------------------------------------------------

    @abstractmethod
    async def _close_connections(self) -> None:
        """Close every connection (they reopen lazily on the next use)."""

    def attach(self, component: object) -> None:
        """Record that ``component`` uses this driver (idempotent per component)."""
        self._attached.add(id(component))

    async def detach(self, component: object) -> None:
        """Record that ``component`` is done; close the connections after the last one."""
        self._attached.discard(id(component))
        if not self._attached:
            await self.close()

    @property
    def attached(self) -> int:
        """How many components use this driver."""
        return len(self._attached)

    async def close(self) -> None:
        """Close every connection now (components attached later reopen them)."""
        await self._close_connections()
        self._schema_ready = False

    async def ensure_schema(self) -> None:
        """Create or migrate the schema once per open driver (see :mod:`wfe_sql.migrations`)."""
        if self._schema_ready:
            return
        if self._schema_lock is None:
            self._schema_lock = asyncio.Lock()
        async with self._schema_lock:
            if not self.schema_ready:  # another task may have migrated meanwhile
                from wfe_sql.migrations import migrate

                await migrate(self)
                self._schema_ready = True

    @property
    def schema_ready(self) -> bool:
        """Whether :meth:`ensure_schema` already checked the store since it was opened."""
        return self._schema_ready

    def forget_schema(self) -> None:
        """Make the next :meth:`ensure_schema` check the store again."""
        self._schema_ready = False

    # -- compiled statements -------------------------------------------------------------

    def compile(self, statement: ClauseElement) -> Statement:
        """Compile a statement for this driver's dialect (not cached: see :meth:`cached`)."""
        return compile_statement(statement, self.dialect)

    def cached(self, key: Hashable, build: Callable[[SqlDriver], Any]) -> Any:
        """``build(self)`` once per :attr:`dialect_key`, :attr:`namespace` and ``key``;
        later calls (from any driver of the same dialect and namespace) return the same
        object."""
        cache_key = (self.dialect_key, self.namespace, key)
        found = self._statements.get(cache_key)
        if found is None:
            found = _GLOBAL_CACHE.get(cache_key)
            if found is None:
                found = build(self)
                _GLOBAL_CACHE[cache_key] = found
            self._statements[cache_key] = found
        return found


_GLOBAL_CACHE: dict[Hashable, Any] = {}


async def _run_session(session: SqlSession, ops: Sequence[Op]) -> list[Any]:
    """Run batch steps one by one on a session (the generic :meth:`SqlDriver.write_batch`)."""
    out: list[Any] = []
    for index, op in enumerate(ops):
        if op.rows is not None:
            await session.executemany(op.sql, op.rows)
            out.append(len(op.rows))
        elif op.fetch:
            out.append(await session.fetchall(op.sql, op.args))
        else:
            count = await session.execute(op.sql, op.args)
            if op.expect is not None and count != op.expect:
                raise BatchAborted(index, count)
            out.append(count)
    return out


async def _run_group_batch(session: SqlSession, ops: Sequence[Op]) -> list[Any] | BatchAborted:
    """One batch of a group (the generic :meth:`SqlDriver.write_group`): its results, or
    the abort of a batch skipped because its first step matched no row."""
    out: list[Any] = []
    for index, op in enumerate(ops):
        if op.rows is not None:
            await session.executemany(op.sql, op.rows)
            out.append(len(op.rows))
        elif op.fetch:
            out.append(await session.fetchall(op.sql, op.args))
        else:
            count = await session.execute(op.sql, op.args)
            if op.expect is not None and count != op.expect:
                if index == 0 and count == 0:  # changed nothing: skip this batch only
                    return BatchAborted(index, count)
                raise BatchAborted(index, count)
            out.append(count)
    return out


S = TypeVar("S")


class DriverComponent(Generic[S]):
    """Base of the table-backed lock and queue providers: a driver, its compiled
    statements, and the attach/detach bookkeeping that keeps the store open from
    ``start`` to ``stop`` (or just for one call when not started)."""

    def __init__(self, driver: SqlDriver, stmts: S) -> None:
        self.driver = driver
        self._stmts = stmts
        self._attached = False

    @asynccontextmanager
    async def _use(self) -> AsyncIterator[S]:
        """The statements, with the store open: held from :meth:`_open` to
        :meth:`_close`, or just for this call when the component is not started."""
        if self._attached:
            await self.driver.ensure_schema()
            yield self._stmts
            return
        self.driver.attach(self)
        try:
            await self.driver.ensure_schema()
            yield self._stmts
        finally:
            if not self._attached:
                await self.driver.detach(self)

    async def _open(self) -> None:
        """Keep the store open (creating the schema if needed); idempotent."""
        if not self._attached:
            self.driver.attach(self)
            self._attached = True
        await self.driver.ensure_schema()

    async def _close(self) -> None:
        """Let go of the store; idempotent."""
        if self._attached:
            self._attached = False
            await self.driver.detach(self)
