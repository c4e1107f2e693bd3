"""The SQLite :class:`~wfe_sql.SqlDriver`, on aiosqlite.

Connections (each aiosqlite connection runs in a thread of its own):

- one **writer**: every write of this process goes through it: SQLite allows one writer
  per database file, so a pool of writers would only queue inside SQLite instead. Each
  write is one self-contained unit of work handed to the writer's thread in one hop
  (a single autocommit statement, or a whole ``BEGIN IMMEDIATE`` ... ``COMMIT``), so
  units queue up on that thread back to back and it never waits for the event loop
  between them. Write batches (step checkpoints, ...) are group-committed
  (:mod:`wfe_sql.group_commit`): those that queue up while the writer is busy share one
  transaction and one sync of the log. ``BEGIN IMMEDIATE`` takes the file's write lock
  up front (waiting up to ``busy_timeout`` for another process to finish), so a
  transaction never fails half-way on a lock. The rare multi-hop transaction
  (:meth:`SqliteDriver.write`, migrations) holds the writer alone while it is open.
- up to ``readers`` **readers** (opened on first use), in WAL mode reading a consistent
  snapshot while a writer writes. A multi-statement read runs in one read transaction.
- ``:memory:``: one connection does everything (under the lock), since each connection
  to ``:memory:`` is a database of its own.

One hop per unit of work, on aiosqlite's public API only (:func:`_in_thread`): every
connection is opened with ``aiosqlite.connect(..., factory=_Connection)``; aiosqlite
passes its extra keywords on to ``sqlite3.connect``, whose documented ``factory``
argument makes the raw connection a :class:`_Connection`, a ``sqlite3.Connection``
subclass. A unit of work (a group-commit transaction, a multi-statement read) is handed
over as the *parameters* of aiosqlite's public ``Connection.execute``: aiosqlite queues
that call on its own queue for the connection's thread, in order with every other call,
and there calls the raw connection's ``execute(sql, parameters)``, which
:class:`_Connection` overrides to run the unit, on the raw connection, when the
parameters are one (any other ``execute`` is sqlite3's own). So the whole unit still
costs one thread hop, and no private attribute of aiosqlite is touched. What this
relies on, each checked by ``tests/test_sqlite_thread_handoff.py`` (a change fails
loudly, never silently: a unit reaching sqlite3's own ``execute`` is rejected as
parameters of an unsupported type): ``connect`` passes ``factory`` on;
``Connection.execute`` calls the raw ``execute`` with the parameters as given; and it
queues the call before it first suspends (which keeps one-hop writes out of an open
multi-hop transaction). The one thing lost against the former private hand-over: a unit
still queued when its event loop is *closed* (not merely cancelled -- ``asyncio.run``
cancels and awaits every task before closing) makes aiosqlite's own delivery of the
result fail in the connection's thread, as for any other aiosqlite call.

Durability: WAL journal with ``synchronous=FULL`` by default, so every committed
transaction -- every step checkpoint -- is on disk before the call returns and survives
a power loss. ``synchronous="NORMAL"`` is much faster (no fsync per commit) and still
never corrupts the database, but the last transactions before a power loss or OS crash
may be lost (a crash of the process alone loses nothing).

Read-only (``read_only=True``, or ``?mode=ro`` in a URL): every connection opens the
file with SQLite's ``mode=ro`` and ``PRAGMA query_only``; nothing is created, migrated or
switched (no journal-mode or ``synchronous`` change), and every write fails with
:class:`~wfe_core.errors.ProviderUnavailable` saying the store is read-only. The file
and its wfe tables must exist at the current schema version. Reads work while another
process holds the write lock (a WAL reader never waits for a writer) and on a file this
process may not write.

Checkpoints (``checkpoint="auto"``, the default): SQLite's own automatic checkpoint
(``wal_autocheckpoint``, every 1000 pages of log) folds the WAL back into the file. With
``checkpoint="external"`` (``?checkpoint=external``) every connection sets ``PRAGMA
wal_autocheckpoint=0`` and wfe never checkpoints at all, leaving it to an external WAL
replicator such as Litestream, which must see every frame of the log before it is
folded in. (wfe issues no explicit ``wal_checkpoint`` in either mode; SQLite still
checkpoints when the *last* connection to the file closes, which never happens while
the replicator holds the file open.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeVar, cast

import aiosqlite
from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.sql import FromClause
from wfe_core.errors import ProviderUnavailable, WfeError
from wfe_core.retry import Backoff
from wfe_sql.driver import IntegrityViolation, Op, Row, SqlDriver
from wfe_sql.group_commit import GroupCommit, Outcome, skip_or_abort
from wfe_sql.migrations import SchemaVersionError
from wfe_sql.schema import SCHEMA_VERSION, TABLE_PREFIX

__all__ = ["CHECKPOINT_MODES", "MEMORY", "MIN_SQLITE", "Checkpoint", "SqliteDriver", "Synchronous"]

_log = logging.getLogger("wfe.sqlite")

MIN_SQLITE = (3, 35, 0)
"""The oldest SQLite library wfe-sqlite works with (``RETURNING`` arrived in 3.35)."""

MEMORY = ":memory:"
"""The path of an in-memory database (private to its driver)."""

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
"""The values of SQLite's ``PRAGMA synchronous`` (``FULL`` is wfe's default)."""

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

Checkpoint = Literal["auto", "external"]
"""Who checkpoints the WAL: SQLite's automatic checkpoint (``auto``, the default) or an
external replicator (``external``: wfe sets ``wal_autocheckpoint=0``)."""

CHECKPOINT_MODES = ("auto", "external")
"""The values of ``checkpoint``."""
_T = TypeVar("_T")


class _Compiler(SQLiteCompiler):
    """SQLite's compiler, rendering ``with_hint(table, "INDEXED BY ...", "sqlite")``."""

    def get_from_hint_text(self, table: FromClause, text: str | None) -> str | None:
        return text


class _Dialect(SQLiteDialect_pysqlite):
    """SQLite (``?`` parameters) with table hints: wfe_sql pins an index with them where
    SQLite's planner, lacking statistics, would pick a worse one."""

    statement_compiler = _Compiler


_DIALECT = _Dialect(paramstyle="qmark")

# Primary SQLite result codes the messages distinguish.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
# SQLITE_READONLY_CANTINIT and SQLITE_READONLY_DIRECTORY: a read-only connection cannot
# set up the WAL shared-memory file (see SqliteDriver._connect_read_only).
_NO_SHARED_MEMORY = frozenset({_READONLY | (5 << 8), _READONLY | (6 << 8)})


class SqliteDriver(SqlDriver):
    """Connections to one SQLite database file (or ``:memory:``); see the module docstring.

    ``path`` may be relative (resolved against the current directory now) or absolute;
    its folder must exist. ``busy_timeout`` (seconds) is how long a write waits for
    another process holding the database's write lock before failing with
    :class:`~wfe_core.errors.ProviderUnavailable`. ``max_group`` caps how many write
    batches (step checkpoints, ...) one group-committed transaction holds.
    ``read_only`` opens the file read-only (see the module docstring); it needs an
    existing file, not ``:memory:``. ``checkpoint="external"`` leaves WAL checkpoints to
    an external replicator (see the module docstring).
    """

    dialect = _DIALECT

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous | str = "FULL",
        busy_timeout: float = 5.0,
        readers: int = 2,
        max_group: int = 64,
        read_only: bool = False,
        namespace: str | None = None,
        checkpoint: Checkpoint | str = "auto",
    ) -> None:
        super().__init__(namespace=namespace)
        if checkpoint not in CHECKPOINT_MODES:
            raise ValueError(
                f"checkpoint must be 'auto' (SQLite checkpoints the WAL itself) or "
                f"'external' (a replicator such as Litestream does), not {checkpoint!r}"
            )
        self.checkpoint = str(checkpoint)
        """``auto`` or ``external`` (wfe sets ``wal_autocheckpoint=0``)."""
        raw = os.fspath(path)
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"a SQLite database path must be a non-empty string, not {path!r}")
        sync = str(synchronous).upper()
        if sync not in _SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)} (FULL: every commit "
                f"survives a power loss; NORMAL: faster), not {synchronous!r}"
            )
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be a number of seconds >= 0, not {busy_timeout!r}")
        if readers < 1:
            raise ValueError(f"readers must be at least 1, not {readers!r}")
        self.memory = raw == MEMORY
        if read_only and self.memory:
            raise ValueError(
                "an in-memory SQLite database cannot be opened read-only: it starts empty "
                "and nothing else can fill it; give the path of a database file"
            )
        self.read_only = bool(read_only)
        """Whether the file is opened read-only (every write fails)."""
        self.path = raw if self.memory else os.path.abspath(raw)
        self.name = self.path
        if self.tables.prefix != TABLE_PREFIX:  # another namespace: its own queue signals
            self.name = f"{self.path} (namespace {self.namespace})"
        self.synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self.max_readers = readers
        self._writer: aiosqlite.Connection | None = None
        self._sync_state: list[str] = [""]  # the writer's level; touched on its thread only
        self._session_lock = asyncio.Lock()  # held by a multi-hop transaction on the writer
        self._open_lock = asyncio.Lock()
        self._idle: list[aiosqlite.Connection] = []
        self._reader_slots = asyncio.Semaphore(readers)
        self._generation = 0
        # One group in flight: everything queued meanwhile forms the next one. (A second
        # one queued behind it on the writer's thread makes smaller groups, more syncs:
        # measured slower at 64 workflows in flight, no faster at 8.)
        self._groups = self.group_commit = GroupCommit(
            self.write_group, max_groups=1, max_batches=max_group
        )

    def __repr__(self) -> str:
        if self.read_only:
            return f"<SqliteDriver {self.path} read-only>"
        return f"<SqliteDriver {self.path} synchronous={self.synchronous}>"

    def insert(self, table: Table) -> Any:
        """SQLite's ``INSERT`` construct (with ``ON CONFLICT`` support)."""
        return sqlite_insert(table)

    # -- errors --------------------------------------------------------------------------

    def error(self, exc: BaseException) -> BaseException:
        """The wfe error for a driver exception (``exc`` is chained by the caller)."""
        if isinstance(exc, WfeError):
            return exc
        if isinstance(exc, sqlite3.IntegrityError):
            return IntegrityViolation(str(exc))
        if isinstance(exc, sqlite3.InterfaceError):
            return TypeError(f"a value cannot be stored in SQLite: {exc}")
        if isinstance(exc, OverflowError):
            return ValueError(f"a number is too large for SQLite (64-bit integers): {exc}")
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        message = str(exc)
        where = self.path
        if primary in (_BUSY, _LOCKED) or "database is locked" in message:
            return ProviderUnavailable(
                f"SQLite database {where} is locked: another connection held its write lock "
                f"for longer than busy_timeout={self.busy_timeout:g}s. Pass a larger "
                "busy_timeout (e.g. busy_timeout=30), or find the process keeping a "
                f"transaction open on it ({message})"
            )
        if primary == _NOTADB or "file is not a database" in message:
            return ProviderUnavailable(
                f"{where} is not a SQLite database (or it is encrypted or damaged); point wfe "
                "at a new file, or at a database file wfe created"
            )
        if primary == _CORRUPT:
            return ProviderUnavailable(f"SQLite database {where} is damaged ({message})")
        if primary == _CANTOPEN or "unable to open database file" in message:
            return ProviderUnavailable(
                f"cannot open the SQLite database {where} ({message}): check that the path "
                "names a file (not a folder) that this process may read and write"
            )
        if primary == _READONLY and self.read_only:
            return ProviderUnavailable(self._read_only_message())
        if primary == _READONLY:
            return ProviderUnavailable(
                f"SQLite database {where} is read-only for this process ({message}): wfe "
                "needs write access to the file and its folder"
            )
        if primary == _FULL:
            return ProviderUnavailable(f"the disk holding {where} is full ({message})")
        if primary == _IOERR:
            return ProviderUnavailable(f"disk I/O error on SQLite database {where} ({message})")
        if "no such table" in message:
            return ProviderUnavailable(
                f"the wfe tables are missing from {where} ({message}); they are created by "
                "ensure_store_exists() (or `async with provider`)"
            )
        if isinstance(exc, ValueError) and (
            # aiosqlite: "Connection closed", or "no active connection" (its execute)
            "closed" in message.lower() or "no active connection" in message
        ):
            return ProviderUnavailable(f"the connection to {where} is closed")
        return ProviderUnavailable(f"SQLite error on {where}: {type(exc).__name__}: {message}")

    def _read_only_message(self) -> str:
        return (
            f"SQLite database {self.path} is opened read-only (read_only=True, or mode=ro "
            "in the URL): it cannot be written; open it without read_only to write"
        )

    def _raise(self, exc: BaseException) -> None:
        mapped = self.error(exc)
        if mapped is exc:
            raise exc
        raise mapped from exc

    # -- connections ---------------------------------------------------------------------

    def _check_folder(self) -> None:
        if self.memory:
            return
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise ProviderUnavailable(
                f"cannot open the SQLite database {self.path}: the folder {folder} does not "
                f"exist. Create it first (mkdir -p {folder}) or choose another path"
            )
        if os.path.isdir(self.path):
            raise ProviderUnavailable(
                f"cannot open the SQLite database {self.path}: it is a folder; give the "
                "path of a database file (e.g. .../wfe.db)"
            )
        if self.read_only and not os.path.exists(self.path):
            raise ProviderUnavailable(
                f"cannot open the SQLite database {self.path} read-only: the file does not "
                "exist (a read-only open never creates it); check the path, or open it for "
                "writing once (e.g. start a worker on it)"
            )

    async def _connect(self, *, writer: bool) -> aiosqlite.Connection:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ProviderUnavailable(
                f"wfe-sqlite needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer "
                f"(RETURNING, upserts); this Python has SQLite {sqlite3.sqlite_version}. "
                "Use a newer Python build"
            )
        self._check_folder()
        try:
            if self.read_only:
                conn = await self._connect_read_only()
            else:
                conn = await aiosqlite.connect(
                    self.path,
                    isolation_level=None,
                    timeout=self.busy_timeout,
                    factory=_Connection,  # passed on to sqlite3.connect (see _in_thread)
                )
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._raise(exc)
            raise  # unreachable
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if self.checkpoint == "external":  # never checkpoint: the replicator does
                await conn.execute("PRAGMA wal_autocheckpoint = 0")
            if self.read_only:
                await conn.execute("PRAGMA query_only = 1")
            elif writer and not self.memory:
                await self._enable_wal(conn)
            if writer:
                await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                self._sync_state = [self.synchronous]
            else:
                await conn.execute("PRAGMA query_only = 1")
        except BaseException as exc:
            await _quiet_close(conn)
            if isinstance(exc, sqlite3.Error | ValueError):
                self._raise(exc)
            raise
        return conn

    async def _connect_read_only(self) -> aiosqlite.Connection:
        """A connection with SQLite's ``mode=ro``: it can neither create nor change the
        file (nor its journal mode).

        A WAL database needs its shared-memory file (``-shm``) to be read. When no other
        connection has the database open, that file is gone, and in a folder this
        process may not write it cannot be made (``SQLITE_READONLY_DIRECTORY``): then,
        and only then, the file is opened ``immutable`` -- nobody is writing it, and
        nobody can make the journal files needed to write it without write access to
        the folder.
        """
        uri = f"file:{urllib.parse.quote(self.path, safe='/')}?mode=ro"
        conn = await aiosqlite.connect(
            uri, uri=True, isolation_level=None, timeout=self.busy_timeout, factory=_Connection
        )
        try:
            await conn.execute_fetchall("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.Error as exc:
            await _quiet_close(conn)
            if getattr(exc, "sqlite_errorcode", None) not in _NO_SHARED_MEMORY:
                raise
            _log.debug("%s: no -shm file and a read-only folder; opening it immutable", self.path)
            return await aiosqlite.connect(
                uri + "&immutable=1",
                uri=True,
                isolation_level=None,
                timeout=self.busy_timeout,
                factory=_Connection,
            )
        except BaseException:
            await _quiet_close(conn)
            raise
        return conn

    async def ensure_schema(self) -> None:
        """Create or migrate the schema (see :meth:`SqlDriver.ensure_schema`); read-only:
        check, without writing, that the file holds a wfe store at the current schema
        version (:class:`~wfe_core.errors.ProviderUnavailable` otherwise)."""
        if not self.read_only:
            await super().ensure_schema()
            return
        if self.schema_ready:
            return
        version_table = self.tables.schema_version.name
        found = await self.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (version_table,)
        )
        if not found:
            where = (
                "" if self.tables.prefix == TABLE_PREFIX else f" in namespace {self.namespace!r}"
            )
            raise ProviderUnavailable(
                f"SQLite database {self.path} holds no wfe store{where} (no "
                f"{version_table} table), and a read-only open does not create one; check "
                "the path and the namespace, or open it for writing once (e.g. start a "
                "worker on it)"
            )
        row = await self.fetchone(f"SELECT max(version) FROM {version_table}")
        stored = int(row[0]) if row is not None and row[0] is not None else 0
        if stored > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store {self.name} has wfe schema version {stored}, but this wfe only "
                f"understands versions up to {SCHEMA_VERSION}. It was written by a newer "
                f"wfe: upgrade wfe (e.g. `pip install -U wfe-sql {self.distribution}`) to "
                "use it. Nothing was changed.",
                stored,
                SCHEMA_VERSION,
            )
        if stored < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store {self.name} has wfe schema version {stored}, older than this "
                f"wfe's {SCHEMA_VERSION}, and a read-only open cannot upgrade it: open it "
                "for writing once (e.g. start a worker on it), then read it. Nothing was "
                "changed.",
                stored,
                SCHEMA_VERSION,
            )
        self._schema_ready = True

    async def _enable_wal(self, conn: aiosqlite.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access; when several processes
        # open a new file at once, retry within the busy timeout.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                rows = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.01)
        mode = str(next(iter(rows))[0]).lower() if rows else "?"
        if mode != "wal":
            _log.warning(
                "SQLite database %s is in journal mode %r, not WAL (the file system may not "
                "support it): readers will wait for writers",
                self.path,
                mode,
            )

    async def _writer_connection(self) -> aiosqlite.Connection:
        conn = self._writer
        if conn is not None:
            return conn
        if self.read_only:  # every write, transaction and migration comes through here
            raise ProviderUnavailable(self._read_only_message())
        async with self._open_lock:
            if self._writer is None:
                self._writer = await self._connect(writer=True)
            return self._writer

    async def _writer_for_one_hop(self) -> aiosqlite.Connection:
        """The writer, once no multi-hop transaction holds it. The caller hands its work
        over *without awaiting anything else in between* (:func:`_in_thread` queues it
        before it first suspends), so the work cannot land inside such a transaction."""
        while True:
            if self._session_lock.locked():
                async with self._session_lock:
                    pass
                continue
            conn = self._writer
            if conn is None:
                await self._writer_connection()
                continue
            return conn

    async def _close_connections(self) -> None:
        await self._groups.drain()
        self._generation += 1
        writer, self._writer = self._writer, None
        idle, self._idle = self._idle, []
        for conn in [*idle, *([writer] if writer is not None else [])]:
            await _quiet_close(conn)

    # -- sessions ------------------------------------------------------------------------

    def write(self) -> AbstractAsyncContextManager[_Session]:
        """A ``BEGIN IMMEDIATE`` transaction on the writer (one at a time per process)."""
        return self._transaction("BEGIN IMMEDIATE")

    def migration(self) -> AbstractAsyncContextManager[_Session]:
        """``BEGIN IMMEDIATE``: it holds the file's write lock, so migrations of the same
        file (from any process) run one after another."""
        return self._transaction("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[_Session]:
        async with self._session_lock:
            conn = await self._writer_connection()
            try:
                # Queued behind every one-hop write handed over before the lock was taken.
                await _in_thread(
                    conn, _with_sync, self._sync_state, self._sync_level(True), _begin, begin
                )
            except BaseException as exc:
                await _quiet_rollback(conn)
                if isinstance(exc, sqlite3.Error | ValueError):
                    self._raise(exc)
                raise
            try:
                yield _Session(conn, self)
            except BaseException:
                await _quiet_rollback(conn)
                raise
            try:
                await conn.commit()
            except BaseException as exc:
                await _quiet_rollback(conn)
                if isinstance(exc, sqlite3.Error | ValueError):
                    self._raise(exc)
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_Session]:
        """A read transaction on a reader (one snapshot for every statement in it)."""
        if self.memory:
            async with self._session_lock:
                yield _Session(await self._writer_connection(), self)
            return
        async with self._reader() as conn:
            try:
                await conn.execute("BEGIN")
            except BaseException as exc:
                await _quiet_rollback(conn)
                if isinstance(exc, sqlite3.Error | ValueError):
                    self._raise(exc)
                raise
            try:
                yield _Session(conn, self)
            finally:
                await _quiet_rollback(conn)

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._reader_slots:
            generation = self._generation
            conn = self._idle.pop() if self._idle else await self._connect(writer=False)
            try:
                yield conn
            finally:
                if generation == self._generation:
                    self._idle.append(conn)
                else:  # the driver was closed meanwhile
                    await _quiet_close(conn)

    # -- one-statement shortcuts ---------------------------------------------------------

    def _sync_level(self, durable: bool | None) -> str | None:
        """The ``synchronous`` level a write runs at (None: leave it as it is).

        Durable writes run at the configured level; ``durable=False`` ones (lock leases,
        queue hints) at NORMAL, which commits without waiting for the disk. In WAL mode
        the next FULL commit flushes those earlier commits too, and a crash of the
        process alone loses neither.
        """
        if self.memory or durable is None:
            return None
        return self.synchronous if durable or self.synchronous in ("OFF", "NORMAL") else "NORMAL"

    async def _on_writer(
        self, fn: Callable[..., _T], *args: Any, durable: bool | None = None
    ) -> _T:
        """Run ``fn(raw_connection, *args)`` on the writer's thread in one hop, at the
        ``synchronous`` level ``durable`` asks for (:meth:`_sync_level`). It is queued
        behind the writes handed over before it; once queued it runs to its end even if
        the awaiting task is cancelled. Driver exceptions become wfe errors."""
        conn = await self._writer_for_one_hop()
        try:  # queued before the first suspension, so the writer is still free of sessions
            return await _in_thread(
                conn,
                _with_sync,
                self._sync_state,
                self._sync_level(durable),
                fn,
                *args,
                to_the_end=True,
            )
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            self._raise(exc)
            raise

    async def execute(self, sql: str, args: Sequence[Any] = (), *, durable: bool = True) -> int:
        """One writing statement, atomic on its own, group-committed with the other
        writes queued meanwhile (lock leases and queue hints ride along with the
        checkpoints instead of costing a hop and a commit each)."""
        (count,) = await self._groups.submit([Op(sql, args)], durable=durable)
        return int(count)

    async def execute_returning(
        self, sql: str, args: Sequence[Any] = (), *, durable: bool = True
    ) -> list[Row]:
        """One writing statement with ``RETURNING``, group-committed like :meth:`execute`."""
        (rows,) = await self._groups.submit([Op(sql, args, fetch=True)], durable=durable)
        return list(rows)

    async def write_batch(self, ops: Sequence[Op]) -> list[Any]:
        """One atomic batch, group-committed (:mod:`wfe_sql.group_commit`): the batches
        queued meanwhile by other tasks of this process share its ``BEGIN IMMEDIATE``
        ... ``COMMIT``, one hop to the writer's thread and one sync of the log. Once
        handed to the writer it completes even if the awaiting task is cancelled."""
        return await self._groups.submit(ops)

    async def write_group(self, batches: list[Sequence[Op]], durable: bool) -> list[Outcome]:
        """One group-commit transaction (the :class:`GroupCommit` hook)."""
        wait = None if self.memory else self.busy_timeout
        return await self._on_writer(_run_group, batches, wait, durable=durable)

    async def read_batch(self, ops: Sequence[Op]) -> list[Any]:
        """Every step on one snapshot (a read transaction), in one hop to a reader."""
        if self.memory:
            return await self._on_writer(_read_batch, ops)
        async with self._reader() as conn:
            try:
                return await _in_thread(conn, _read_batch, ops)
            except (sqlite3.Error, OverflowError, ValueError) as exc:
                self._raise(exc)
                raise

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """One reading statement on a reader (on the single connection for ``:memory:``)."""
        if self.memory:
            return await self._on_writer(_fetch_rows, sql, args)
        async with self._reader() as conn:
            return await _Session(conn, self).fetchall(sql, args)

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """One reading statement; its first row or None."""
        rows = await self.fetchall(sql, args)
        return rows[0] if rows else None

    # -- introspection (tests, diagnostics) ----------------------------------------------

    async def on_writer(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` with the writer's ``sqlite3.Connection`` on its thread,
        holding the write lock (diagnostics and tests: trace callbacks, counters)."""
        return await self._on_writer(fn)

    async def pragma(self, name: str) -> Any:
        """The value of ``PRAGMA name`` on the writer connection (e.g. ``synchronous``)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        rows = await self._on_writer(_fetch_rows, f"PRAGMA {name}", ())
        return rows[0][0] if rows else None


class _Session:
    """A connection inside a transaction of :class:`SqliteDriver`."""

    __slots__ = ("_conn", "_driver")

    def __init__(self, conn: aiosqlite.Connection, driver: SqliteDriver) -> None:
        self._conn = conn
        self._driver = driver

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            cursor = await self._conn.execute(sql, args)
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            self._driver._raise(exc)
            raise
        return int(cursor.rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            self._driver._raise(exc)
            raise

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, args))
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            self._driver._raise(exc)
            raise

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, args)
        return rows[0] if rows else None


async def _quiet_rollback(conn: aiosqlite.Connection) -> None:
    """Roll back if a transaction is open, ignoring every error. The rollback is queued
    on the connection's thread before this awaits, so even when the waiting task is
    cancelled it runs before anything else queued later on that connection."""
    with contextlib.suppress(Exception):  # best effort: the original error propagates
        await conn.rollback()


async def _quiet_close(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(Exception):  # best effort
        await conn.close()


class _Unit:
    """``fn(raw sqlite3 connection, *args)``: a unit of work for a connection's thread,
    handed over in one hop by :func:`_in_thread` and run by :meth:`_Connection.execute`.
    Deliberately not iterable: should it ever reach sqlite3's own ``execute`` as
    parameters, sqlite3 rejects it (``ProgrammingError``) instead of doing anything."""

    __slots__ = ("_args", "_done", "_fn", "_lock", "_waiter", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn = fn
        self._args = args
        self._lock = threading.Lock()
        self._done = False
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.result: Any = None
        """What ``fn`` returned (once it has run)."""

    def __repr__(self) -> str:  # aiosqlite's debug log names the work it runs
        return f"<wfe_sqlite unit {getattr(self._fn, '__name__', self._fn)!s}>"

    def run(self, raw: sqlite3.Connection) -> None:
        """On the connection's thread: run ``fn``. Its exception propagates to aiosqlite,
        which hands it to the caller awaiting the hop."""
        try:
            self.result = self._fn(raw, *self._args)
        finally:
            with self._lock:
                self._done = True
                waiter = self._waiter
            if waiter is not None:  # a cancelled caller waits for the end (finished())
                loop, future = waiter
                with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                    loop.call_soon_threadsafe(_set_done, future)

    async def finished(self) -> None:
        """Wait, through any cancellation, until :meth:`run` has returned (for a caller
        cancelled after handing the unit over; the result is no longer delivered)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done:
                return
            self._waiter = (loop, future)
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Connection(sqlite3.Connection):
    """The ``sqlite3.Connection`` class of every connection the driver opens (sqlite3's
    documented ``factory`` argument, passed on by :func:`aiosqlite.connect`): sqlite3's
    own connection, except that :meth:`execute` given a :class:`_Unit` as its parameters
    runs that unit -- on the thread aiosqlite runs ``execute`` on -- instead of a
    statement. See the module docstring."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """sqlite3's ``execute``; with a :class:`_Unit` as ``parameters``, run it (``sql``
        is then only a comment naming the hand-over) and return an unused cursor."""
        if type(parameters) is _Unit:
            parameters.run(self)
            return self.cursor()
        return super().execute(sql, parameters)


_UNIT_SQL = "/* wfe_sqlite: a unit of work run on this connection's thread */"


async def _in_thread(
    conn: aiosqlite.Connection, fn: Callable[..., _T], *args: Any, to_the_end: bool = False
) -> _T:
    """Run ``fn(raw sqlite3 connection, *args)`` on the aiosqlite connection's own thread:
    a whole unit of work in one hop instead of one hop per statement (each hop is a
    thread hand-off, tens to hundreds of microseconds).

    The hop is aiosqlite's public ``Connection.execute`` with a :class:`_Unit` as the
    parameters (the connection must have been opened with ``factory=_Connection``), so
    it is queued on aiosqlite's own queue of work for its thread, in order with every
    other call on the connection -- and queued before this first suspends: a caller that
    checked something (no multi-hop transaction open) and then awaits this without
    awaiting anything else in between hands its work over with the check still true.
    Once queued, ``fn`` runs to its end even if the awaiting task is cancelled, and the
    cancellation propagates only once ``fn`` has returned and aiosqlite has handed its
    outcome back to this loop: a writer never returns while its write may still change
    the store, and no delivery is left in flight for a loop that may close next (one
    would end the connection's thread). ``to_the_end`` is kept for callers that say so
    explicitly; every call behaves that way.
    """
    unit = _Unit(fn, args)
    try:
        # Not iterable, on purpose (see _Unit): the cast only names aiosqlite's type.
        await conn.execute(_UNIT_SQL, cast("Iterable[Any]", unit))
    except asyncio.CancelledError:
        await unit.finished()
        # aiosqlite hands the unit's outcome to this loop from its thread right after
        # the unit returns. Wait for that too, through one more (empty) call on the same
        # queue: it is answered only after the previous delivery reached the loop, so a
        # loop closed next (asyncio.run ending) never meets a delivery in flight.
        with contextlib.suppress(Exception):
            await conn.execute(_UNIT_SQL, cast("Iterable[Any]", _Unit(_nothing, ())))
        raise
    return cast(_T, unit.result)


def _nothing(raw: sqlite3.Connection) -> None:
    """An empty unit of work (see :func:`_in_thread`)."""


def _with_sync(
    raw: sqlite3.Connection, state: list[str], want: str | None, fn: Callable[..., _T], *args: Any
) -> _T:
    """On the writer's thread: switch ``synchronous`` to ``want`` if it is not there yet
    (``state[0]`` tracks the level, on this thread only), then ``fn(raw, *args)``."""
    if want is not None and state[0] != want:
        state[0] = ""  # unknown until the switch is through
        raw.execute(f"PRAGMA synchronous = {want}")
        state[0] = want
    return fn(raw, *args)


def _begin(raw: sqlite3.Connection, begin: str) -> None:
    raw.execute(begin)


def _fetch_rows(raw: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Row]:
    return raw.execute(sql, args).fetchall()


_LOCK_PAUSES = (0.00005, 0.002)  # first and longest pause between tries for the write lock


def _begin_immediate(raw: sqlite3.Connection, busy_timeout: float | None) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's write lock in short pauses (50
    µs, doubling up to 2 ms) instead of SQLite's own busy handler, whose pauses are 1, 2,
    5, 10, 15 ... ms: with several worker processes on one file a group would otherwise
    sleep milliseconds past a lock held for a fraction of one. Up to ``busy_timeout``
    seconds, then SQLite's "database is locked" as before (None: one plain try, under
    the connection's own busy timeout)."""
    if busy_timeout is None:
        raw.execute("BEGIN IMMEDIATE")
        return
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        pauses, deadline = Backoff(_LOCK_PAUSES[0], maximum=_LOCK_PAUSES[1], jitter=0.2), 0.0
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) != _BUSY:
                    raise
                now = time.monotonic()
                deadline = deadline or now + busy_timeout
                if now >= deadline:
                    raise
                time.sleep(min(next(pauses), deadline - now))
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int((busy_timeout or 0) * 1000)}")


def _run_group(
    raw: sqlite3.Connection, batches: list[Sequence[Op]], busy_timeout: float | None = None
) -> list[Outcome]:
    """Write transactions of a group (rules in :mod:`wfe_sql.group_commit`) on the
    writer's thread: ``BEGIN IMMEDIATE`` (:func:`_begin_immediate`), each batch, one
    ``COMMIT``."""
    _begin_immediate(raw, busy_timeout)
    try:
        outcomes: list[Outcome] = []
        for ops in batches:
            out: list[Any] = []
            for index, op in enumerate(ops):
                if op.rows is not None:
                    raw.executemany(op.sql, op.rows)
                    out.append(len(op.rows))
                elif op.fetch:
                    out.append(raw.execute(op.sql, op.args).fetchall())
                else:
                    count = raw.execute(op.sql, op.args).rowcount
                    if op.expect is not None and count != op.expect:
                        outcomes.append(skip_or_abort(index, count))
                        break
                    out.append(count)
            else:
                outcomes.append(out)
        raw.commit()
        return outcomes
    except BaseException:
        raw.rollback()
        raise


def _read_batch(raw: sqlite3.Connection, ops: Sequence[Op]) -> list[Any]:
    """Reading steps on one snapshot, on the connection's thread: ``BEGIN``, every step,
    then roll back (a read changes nothing)."""
    raw.execute("BEGIN")
    try:
        out: list[Any] = []
        for op in ops:
            if op.rows is not None:
                raw.executemany(op.sql, op.rows)
                out.append(len(op.rows))
            elif op.fetch:
                out.append(raw.execute(op.sql, op.args).fetchall())
            else:
                out.append(raw.execute(op.sql, op.args).rowcount)
        return out
    finally:
        raw.rollback()
