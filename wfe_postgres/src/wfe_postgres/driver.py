"""The PostgreSQL :class:`~wfe_sql.SqlDriver`, on an asyncpg connection pool.

- **Schema.** Every connection starts with ``search_path`` set to the store's schema
  (default ``wfe``), so the shared statements, compiled once for all PostgreSQL stores,
  address that schema's tables. Several applications (or tests) share one database, each
  in its own schema. The schema is created by the first migration when it is missing.
- **Pool.** One asyncpg pool (``min_size`` .. ``max_size`` connections), created on
  first use. A statement is bounded by ``command_timeout``, a new connection by
  ``connect_timeout``, waiting for a free connection by ``acquire_timeout``. Connections
  are handed back without asyncpg's reset query (wfe leaves no session state behind),
  which saves a round trip per call.
- **Reconnection.** When a call finds its connection broken (the server restarted),
  that connection is closed and every other one is replaced at its next use. The call
  is run again on a new connection when that is safe -- a read, or any statement that
  never left this process -- and otherwise raises
  :class:`~wfe_core.errors.ProviderUnavailable`. While the server is down, calls fail at
  once (connection refused) or within ``connect_timeout`` (no answer).
- **Transactions.** Writes run in ``READ COMMITTED``: each shared statement is a guarded
  single-row change (revision check, token compare-and-set, lease upsert), which
  PostgreSQL re-checks against the newest row version, so concurrent writers resolve
  correctly without stronger isolation. Reads of several statements (an instance and its
  pointers) run in one ``REPEATABLE READ READ ONLY`` snapshot. A write rolled back whole
  by a deadlock or a serialization failure is run again (three attempts in all).
- **Migrations** run in a transaction holding ``pg_advisory_xact_lock`` on a key derived
  from the schema name, so processes starting together migrate one after another.
- **Notifications.** :attr:`PostgresDriver.listener` keeps one dedicated connection
  ``LISTEN``-ing on the store's channel (``<schema>.wfe_queue``) and wakes this process's
  waiting queue consumers; it reconnects (with back-off) after the server restarts and
  listens again.
- **Errors.** Only :mod:`wfe_core.errors` types leave the driver:
  :class:`~wfe_sql.IntegrityViolation` for a unique key,
  :class:`~wfe_core.errors.ProviderUnavailable` (asyncpg's exception chained) for the
  server, the network and the credentials -- each message names what to fix --, and
  ``TypeError`` / ``ValueError`` for values PostgreSQL cannot store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypedDict, TypeVar

import asyncpg
import asyncpg.exceptions
import asyncpg.exceptions._base as asyncpg_base
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from wfe_core.errors import ProviderUnavailable, WfeError
from wfe_core.models import QueueType
from wfe_core.namespaces import DEFAULT_NAMESPACE
from wfe_core.retry import Backoff
from wfe_sql.driver import BatchAborted, IntegrityViolation, Op, Row, SqlDriver
from wfe_sql.group_commit import GroupCommit, Outcome, skip_or_abort
from wfe_sql.queues import local_signal

from wfe_postgres.url import PostgresUrl, parse_postgres_url

__all__ = ["DEFAULTS", "ConnectionOptions", "Listener", "PostgresDriver", "quote_ident"]

_log = logging.getLogger("wfe.postgres")
_T = TypeVar("_T")

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
"""PostgreSQL as asyncpg speaks it: ``$1`` parameters (with casts that pin their types)."""


class ConnectionOptions(TypedDict, total=False):
    """The connection options every PostgreSQL component takes with a URL (see
    :class:`PostgresDriver`)."""

    schema: str
    namespace: str
    min_size: int
    max_size: int
    connect_timeout: float
    command_timeout: float
    acquire_timeout: float
    max_inactive_lifetime: float
    statement_cache_size: int
    listen_keepalive: float
    hint_pool_size: int
    write_groups: int
    server_settings: dict[str, str]


DEFAULTS: dict[str, Any] = {
    "schema": "wfe",
    "min_size": 1,
    "max_size": 10,
    "connect_timeout": 10.0,
    "command_timeout": 30.0,
    "acquire_timeout": 30.0,
    "max_inactive_lifetime": 300.0,
    "statement_cache_size": 100,
    "listen_keepalive": 10.0,
    "hint_pool_size": 2,
    "write_groups": 3,
}
"""The driver options' defaults (see :class:`PostgresDriver`)."""

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_MAX_IDENT = 63  # PostgreSQL's NAMEDATALEN - 1
_ATTEMPTS = 3  # of a call that can safely run again (see PostgresDriver._run)
_CLOSE_TIMEOUT = 5.0
_PROBE_AFTER = 1.0  # a connection not made by then is checked: is this PostgreSQL at all?
_PROBE_TIMEOUT = 1.0  # the probe's two exchanges together
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)

_RETRYABLE_STATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_LOST_CONNECTION_STATES = ("08", "57P")  # connection exceptions, operator intervention


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _check_schema(schema: Any) -> str:
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ValueError(
            f"schema must be a PostgreSQL identifier (a letter or '_' then letters, digits, "
            f"'_' or '$'), not {schema!r}"
        )
    if len(schema.encode()) > _MAX_IDENT:
        raise ValueError(f"schema {schema!r} is longer than PostgreSQL's {_MAX_IDENT} bytes")
    return schema


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a {'whole ' if integer else ''}number, not {value!r}")
    if value < 0 or (value == 0 and not zero) or value == float("inf"):
        raise ValueError(
            f"{name} must be {'>= 0' if zero else 'positive'} and finite, not {value!r}"
        )
    return value


def _rowcount(status: str) -> int:
    """The row count of a command status (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection broke (so a read may be tried again)."""
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError | ConnectionError):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc):
        return True
    return _sqlstate(exc).startswith(_LOST_CONNECTION_STATES)


def _unsent(exc: BaseException) -> bool:
    """Whether ``exc`` was raised before the statement left this process, on a
    connection that broke (the server closed it an instant earlier): any statement may
    then be tried again on another connection."""
    text = str(exc)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return text.startswith("cannot switch to state")
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and text == "connection is closed"


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Hand a connection back to the pool as it is: wfe sets no session state, takes no
    session-level advisory lock and never LISTENs on pool connections (asyncpg rolls
    back an open transaction before calling this)."""


class PostgresDriver(SqlDriver):
    """An asyncpg pool on one PostgreSQL database, addressing one schema.

    ``url`` is a ``postgresql://`` URL (see :mod:`wfe_postgres.url`); options in its
    query string apply unless given here. Options (defaults in :data:`DEFAULTS`):

    - ``schema``: where the wfe tables live (created when missing);
    - ``namespace``: whose tables in that schema (:mod:`wfe_core.namespaces`; default
      ``?namespace=`` of the URL, else ``WFE_NAMESPACE``, else ``default``): each
      namespace has tables, a ``LISTEN`` channel and migrations of its own;
    - ``min_size`` / ``max_size``: the pool's connections;
    - ``connect_timeout``: seconds to open a connection (bad host, silent port);
    - ``command_timeout``: seconds one statement may take;
    - ``acquire_timeout``: seconds to wait for a free pool connection;
    - ``max_inactive_lifetime``: seconds an idle pool connection is kept (0: forever);
    - ``statement_cache_size``: prepared statements kept per connection (0 behind
      PgBouncer in transaction mode);
    - ``listen_keepalive``: seconds between health checks of the notification listener;
    - ``hint_pool_size``: connections for lock-lease and queue writes, which commit
      without waiting for the disk (``synchronous_commit=off``: a lease or hint lost in
      a server crash only frees a lock early or delays work until the next poll); 0
      sends them through the main pool, committed like everything else;
    - ``write_groups``: how many group-committed write transactions run at once (write
      batches -- step checkpoints, ... -- that queue up meanwhile share the next one:
      one ``COMMIT``, one flush of the log for all of them; see
      :mod:`wfe_sql.group_commit`; at most ``max_size`` run at once);
    - ``server_settings``: other session settings (``search_path`` is the schema's).
    """

    dialect = _DIALECT

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        connect_timeout: float | None = None,
        command_timeout: float | None = None,
        acquire_timeout: float | None = None,
        max_inactive_lifetime: float | None = None,
        statement_cache_size: int | None = None,
        listen_keepalive: float | None = None,
        hint_pool_size: int | None = None,
        write_groups: int | None = None,
        server_settings: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> None:
        parsed = parse_postgres_url(url)
        super().__init__(namespace=namespace, url_namespace=parsed.options.get("namespace"))
        given = {
            "schema": schema,
            "min_size": min_size,
            "max_size": max_size,
            "connect_timeout": connect_timeout,
            "command_timeout": command_timeout,
            "acquire_timeout": acquire_timeout,
            "max_inactive_lifetime": max_inactive_lifetime,
            "statement_cache_size": statement_cache_size,
            "listen_keepalive": listen_keepalive,
            "hint_pool_size": hint_pool_size,
            "write_groups": write_groups,
        }
        # The URL's other options (poll_interval, command_lease) are its components'.
        value = {
            k: v if v is not None else parsed.options.get(k, DEFAULTS[k]) for k, v in given.items()
        }
        self.url: PostgresUrl = parsed
        self.schema: str = _check_schema(value["schema"])
        self.min_size: int = _positive("min_size", value["min_size"], integer=True, zero=True)
        self.max_size: int = _positive("max_size", value["max_size"], integer=True)
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})"
            )
        self.connect_timeout: float = float(_positive("connect_timeout", value["connect_timeout"]))
        self.command_timeout: float = float(_positive("command_timeout", value["command_timeout"]))
        self.acquire_timeout: float = float(_positive("acquire_timeout", value["acquire_timeout"]))
        self.max_inactive_lifetime: float = float(
            _positive("max_inactive_lifetime", value["max_inactive_lifetime"], zero=True)
        )
        self.statement_cache_size: int = _positive(
            "statement_cache_size", value["statement_cache_size"], integer=True, zero=True
        )
        self.listen_keepalive: float = float(
            _positive("listen_keepalive", value["listen_keepalive"])
        )
        self.hint_pool_size: int = _positive(
            "hint_pool_size", value["hint_pool_size"], integer=True, zero=True
        )
        self.write_groups: int = _positive("write_groups", value["write_groups"], integer=True)
        # More transactions at once than pool connections would only wait for one.
        self._groups = self.group_commit = GroupCommit(
            self.write_group, max_groups=min(self.write_groups, self.max_size)
        )
        settings = {"application_name": "wfe", **(server_settings or {})}
        if "search_path" in settings:
            raise ValueError("server_settings may not set search_path: pass schema= instead")
        settings["search_path"] = quote_ident(self.schema)
        self.server_settings: dict[str, str] = settings
        where = f"schema {self.schema}"
        if self.namespace != DEFAULT_NAMESPACE:
            where += f", namespace {self.namespace}"
        self.name = f"{parsed.display} ({where})"
        # One channel per schema and namespace: <schema>.wfe_queue for the default
        # namespace (as before namespaces), <schema>.wfe_<ns>__queue for another.
        channel = f"{self.schema}.{self.tables.queue_items.name}"
        if len(channel.encode()) > _MAX_IDENT:
            digest = hashlib.sha256(channel.encode()).hexdigest()[:24]
            channel = f"wfe_queue.{digest}"
        self.channel: str = channel
        """The ``LISTEN/NOTIFY`` channel of this store's queues."""
        key = hashlib.sha256(f"wfe.migrate:{self.schema}".encode()).digest()[:8]
        self.migration_lock_key: int = int.from_bytes(key, "big", signed=True)
        """The ``pg_advisory_xact_lock`` key migrations of this schema hold."""
        self.listener = Listener(self)
        self._pool: asyncpg.Pool | None = None
        self._hint_pool: asyncpg.Pool | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._connecting: set[asyncio.Future[asyncpg.Connection]] = set()

    def __repr__(self) -> str:
        return f"<PostgresDriver {self.name} pool={self.min_size}..{self.max_size}>"

    def insert(self, table: Table) -> Any:
        """PostgreSQL's ``INSERT`` construct (``ON CONFLICT`` support)."""
        return pg_insert(table)

    # -- errors --------------------------------------------------------------------------

    def error(self, exc: BaseException) -> BaseException:
        """The wfe error for a driver exception (``exc`` is chained by the caller)."""
        if isinstance(exc, WfeError):
            return exc
        where = self.url.where
        user = self.url.user or "(the operating-system user)"
        db = self.url.database
        state = _sqlstate(exc)
        message = str(exc)
        if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
            return IntegrityViolation(message)
        if isinstance(exc, asyncpg_base.DataError):  # client side: a value of a wrong type
            return TypeError(f"a value cannot be sent to PostgreSQL: {message}")
        if isinstance(exc, OverflowError):
            return ValueError(f"a number is too large for PostgreSQL: {message}")
        if state.startswith("22"):  # data exception: too long, out of range, NUL byte, ...
            return ValueError(f"PostgreSQL cannot store a value: {message}")
        if isinstance(exc, asyncpg.exceptions.InvalidPasswordError):
            return ProviderUnavailable(
                f"PostgreSQL at {where} refused the password of user {user!r} ({message}): "
                "fix the password in the URL (postgresql://user:PASSWORD@host/db), in "
                "PGPASSWORD or in the passfile"
            )
        if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
            return ProviderUnavailable(
                f"PostgreSQL at {where} refused user {user!r} for database {db!r} "
                f"({message}): fix the user name in the URL, create the role (CREATE ROLE "
                "... LOGIN), or allow it in pg_hba.conf"
            )
        if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
            return ProviderUnavailable(
                f"database {db!r} does not exist on the PostgreSQL server at {where}: "
                f"create it (createdb -h {self.url.host} -p {self.url.port} {db}, or "
                f"CREATE DATABASE {quote_ident(db)}) or fix the database name in the URL"
            )
        if isinstance(exc, asyncpg.exceptions.TooManyConnectionsError):
            return ProviderUnavailable(
                f"PostgreSQL at {where} has no free connection slot ({message}): lower "
                "max_size here or in other clients, or raise the server's max_connections"
            )
        if isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
            return ProviderUnavailable(
                f"user {user!r} lacks a privilege in database {db!r} on {where} "
                f"({message}): grant it (e.g. GRANT CREATE ON DATABASE {quote_ident(db)} "
                f"TO ..., or GRANT USAGE, CREATE ON SCHEMA {quote_ident(self.schema)} TO "
                "...) or use a schema this user owns"
            )
        if isinstance(exc, asyncpg.exceptions.UndefinedTableError):
            return ProviderUnavailable(
                f"a wfe table is missing from schema {self.schema!r} on {where} "
                f"({message}): it is created by ensure_store_exists() (or `async with "
                "provider`); was the schema dropped while the store was in use?"
            )
        if isinstance(exc, asyncpg.exceptions.CannotConnectNowError):
            return ProviderUnavailable(
                f"PostgreSQL at {where} is starting up or shutting down ({message}); "
                "try again in a moment"
            )
        if isinstance(exc, TimeoutError):
            return ProviderUnavailable(
                f"PostgreSQL at {where} did not answer within command_timeout="
                f"{self.command_timeout:g}s (or no pool connection was free within "
                f"acquire_timeout={self.acquire_timeout:g}s): the server may be overloaded "
                "or unreachable, or a lock held too long; raise the timeouts if the work "
                "is legitimately slow"
            )
        if isinstance(exc, ConnectionRefusedError):
            return ProviderUnavailable(
                f"nothing accepts connections at {where} (connection refused): start "
                "PostgreSQL there, or fix the host and port in the URL"
            )
        if isinstance(exc, socket.gaierror):
            return ProviderUnavailable(
                f"the host name {self.url.host!r} cannot be resolved "
                f"({exc.strerror or message}): fix the host in the URL"
            )
        if _lost_connection(exc) or _unsent(exc):
            return ProviderUnavailable(
                f"lost the connection to PostgreSQL at {where} ({type(exc).__name__}: "
                f"{message}); the server may have restarted -- the next call reconnects"
            )
        if isinstance(exc, OSError):
            return ProviderUnavailable(
                f"cannot reach PostgreSQL at {where} ({type(exc).__name__}: "
                f"{exc.strerror or message}): check the host and port in the URL and the "
                "network"
            )
        if isinstance(exc, asyncpg.exceptions.PostgresError):
            return ProviderUnavailable(
                f"PostgreSQL error on {self.name}: {state} {type(exc).__name__}: {message}"
            )
        if isinstance(exc, asyncpg.exceptions.InterfaceError | ssl.SSLError):
            return ProviderUnavailable(
                f"PostgreSQL connection problem with {where}: {type(exc).__name__}: {message}"
            )
        if type(exc).__module__.startswith("asyncpg"):  # never one of asyncpg's own
            return ProviderUnavailable(
                f"PostgreSQL client error on {self.name}: {type(exc).__name__}: {message}"
            )
        return exc

    def _raise(self, exc: BaseException) -> NoReturn:
        mapped = self.error(exc)
        if mapped is exc:
            raise exc
        raise mapped from exc

    # -- connections ---------------------------------------------------------------------

    async def connect(self, *, hints: bool = False) -> asyncpg.Connection:
        """A new connection with the store's settings (``hints``: committing without
        waiting for the disk). Raises :class:`ProviderUnavailable` naming what to fix."""
        settings = self.server_settings
        if hints:
            settings = {**settings, "synchronous_commit": "off"}
        task: asyncio.Future[asyncpg.Connection] = asyncio.ensure_future(
            asyncpg.connect(
                self.url.dsn,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                statement_cache_size=self.statement_cache_size,
                server_settings=settings,
            )
        )
        verdict: str | None = None
        try:
            probe_after = min(_PROBE_AFTER, self.connect_timeout / 2)
            done, _ = await asyncio.wait({task}, timeout=probe_after)
            if not done and not self.url.unix_socket:
                limit = min(_PROBE_TIMEOUT, max(self.connect_timeout - probe_after, 0.1))
                verdict = await _probe(self.url.host, self.url.port, limit)
                if verdict is not None and verdict.startswith("not:") and not task.done():
                    # asyncpg waits for the handshake's answer: safe to cancel there.
                    task.cancel()
                    task.add_done_callback(_dispose)
                    raise ProviderUnavailable(
                        f"{self.url.where} is not a PostgreSQL server: it {verdict[4:]}. "
                        "Check the host and port in the URL (PostgreSQL listens on 5432 by "
                        "default)"
                    )
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Cancelling asyncpg while it sets up the socket leaves a future whose error
            # nobody reads; let the attempt finish (bounded by connect_timeout) and
            # close what it made.
            if not task.done():
                self._connecting.add(task)
                task.add_done_callback(self._connecting.discard)
            task.add_done_callback(_dispose)
            raise
        except TimeoutError as exc:
            raise ProviderUnavailable(self._timeout_message(verdict)) from exc
        except WfeError:
            raise
        except Exception as exc:
            if (
                _lost_connection(exc)
                and not isinstance(exc, ConnectionRefusedError)
                and not isinstance(exc, asyncpg.exceptions.PostgresError)  # the server's own
            ):
                raise ProviderUnavailable(
                    f"{self.url.where} broke off the PostgreSQL handshake ({type(exc).__name__}: "
                    f"{exc}): check that the host and port in the URL name a PostgreSQL "
                    "server, and that no proxy or firewall is in the way"
                ) from exc
            self._raise(exc)

    def _timeout_message(self, verdict: str | None) -> str:
        where, limit = self.url.where, f"connect_timeout={self.connect_timeout:g}s"
        if verdict == "silent":
            return (
                f"{where} accepted a TCP connection but did not answer the PostgreSQL "
                f"handshake within {limit}: check that the port in the URL is PostgreSQL's "
                "(5432 by default) and that the server is not overloaded"
            )
        if verdict == "postgres":
            return (
                f"PostgreSQL at {where} did not complete the connection within {limit}: "
                "the server may be overloaded, or raise connect_timeout"
            )
        return (
            f"no answer from {where} within {limit}: check the host and port in the URL, "
            "that PostgreSQL is running there and that no firewall drops the packets"
        )

    async def _pool_connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        return await self.connect()

    async def _hint_connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        return await self.connect(hints=True)

    async def pool(self, *, hints: bool = False) -> asyncpg.Pool:
        """The connection pool, created (and its ``min_size`` connections opened) on
        first use; ``hints``: the small pool for lock and queue writes (the main pool
        when ``hint_pool_size`` is 0)."""
        hints = hints and self.hint_pool_size > 0
        pool = self._hint_pool if hints else self._pool
        if pool is not None:
            return pool
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            pool = self._hint_pool if hints else self._pool
            if pool is None:
                pool = asyncpg.create_pool(
                    None,
                    min_size=0 if hints else self.min_size,
                    max_size=self.hint_pool_size if hints else self.max_size,
                    max_inactive_connection_lifetime=self.max_inactive_lifetime,
                    connect=self._hint_connect if hints else self._pool_connect,
                    reset=_no_reset,
                )
                try:
                    await pool
                except BaseException as exc:
                    with contextlib.suppress(Exception):
                        pool.terminate()
                    if isinstance(exc, Exception):
                        self._raise(exc)
                    raise
                if hints:
                    self._hint_pool = pool
                else:
                    self._pool = pool
            return pool

    @asynccontextmanager
    async def connection(self, *, hints: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pool connection for the block (errors getting it are mapped; errors in the
        block are the caller's to map); ``hints``: from the lock-and-queue pool."""
        pool = await self.pool(hints=hints)
        try:
            conn = await pool.acquire(timeout=self.acquire_timeout)
        except WfeError:
            raise
        except TimeoutError as exc:
            raise ProviderUnavailable(
                f"no connection to {self.name} became free within acquire_timeout="
                f"{self.acquire_timeout:g}s (max_size={self.max_size}): raise max_size or "
                "acquire_timeout, or look for long-running calls"
            ) from exc
        except Exception as exc:
            self._raise(exc)
        try:
            yield conn
        finally:
            try:
                await pool.release(conn)
            except Exception:  # the pool dropped it; a new one is made when needed
                _log.debug("releasing a connection to %s failed", self.name, exc_info=True)

    async def _expire_connections(self) -> None:
        for pool in (self._pool, self._hint_pool):
            if pool is not None:
                with contextlib.suppress(Exception):
                    await pool.expire_connections()

    async def _close_connections(self) -> None:
        await self._groups.drain()
        await self.listener.close()
        if self._connecting:  # attempts whose callers were cancelled: let them end
            pending = set(self._connecting)
            _, late = await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT / 5)
            for task in late:
                task.cancel()
        pools = [p for p in (self._pool, self._hint_pool) if p is not None]
        self._pool = self._hint_pool = None
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
            except asyncio.CancelledError:
                pool.terminate()
                raise
            except Exception:  # e.g. a connection still in use after the timeout
                _log.warning(
                    "closing the connections to %s did not finish within %gs; cut them",
                    self.name,
                    _CLOSE_TIMEOUT,
                    exc_info=True,
                )
                pool.terminate()

    # -- running work --------------------------------------------------------------------

    async def _run(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[_T]],
        *,
        read: bool = False,
        hints: bool = False,
    ) -> _T:
        """``work(connection)`` on a pool connection, errors mapped. Runs it again (three
        times at most) when that is safe: the statement never left (the connection had
        just broken), a read lost its connection (the server restarted), or a write was
        rolled back whole by a deadlock or serialization failure. A connection that broke
        is closed, so the pool opens a new one."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.connection(hints=hints) as conn:
                    try:
                        return await work(conn)
                    except Exception as exc:
                        if _unsent(exc) or _lost_connection(exc):
                            # The server went away (a restart?): replace this connection
                            # now and the pool's others at their next use.
                            with contextlib.suppress(Exception):  # the pool may have let go
                                conn.terminate()
                            await self._expire_connections()
                        raise
            except (WfeError, BatchAborted):
                raise
            except Exception as exc:
                again = _unsent(exc) or (
                    _lost_connection(exc) if read else _sqlstate(exc) in _RETRYABLE_STATES
                )
                if again and attempt < _ATTEMPTS:
                    _log.debug("running again on %s after %r", self.name, exc)
                    continue
                self._raise(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _transaction(
        self, isolation: str, readonly: bool, *, migration: bool = False
    ) -> AsyncIterator[_Session]:
        async with self.connection() as conn:
            tx = conn.transaction(isolation=isolation, readonly=readonly)
            try:
                await tx.start()
                if migration:
                    await self._prepare_migration(conn)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await tx.rollback()
                self._raise(exc)
            try:
                yield _Session(conn, self)
            except BaseException:
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            try:
                await tx.commit()
            except Exception as exc:
                self._raise(exc)

    async def _prepare_migration(self, conn: asyncpg.Connection) -> None:
        """Take the schema's migration lock, then create the schema if it is missing
        (checked first: ``CREATE SCHEMA IF NOT EXISTS`` needs the CREATE privilege even
        when the schema exists)."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self.migration_lock_key)
        found = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema)
        if found is None:
            await conn.execute(f"CREATE SCHEMA {quote_ident(self.schema)}")

    def write(self) -> contextlib.AbstractAsyncContextManager[_Session]:
        """A ``READ COMMITTED`` transaction on a pool connection."""
        return self._transaction("read_committed", False)

    def read(self) -> contextlib.AbstractAsyncContextManager[_Session]:
        """A ``REPEATABLE READ READ ONLY`` transaction: one snapshot for every statement."""
        return self._transaction("repeatable_read", True)

    def migration(self) -> contextlib.AbstractAsyncContextManager[_Session]:
        """A write transaction holding the schema's migration advisory lock (so
        migrations from every process run one at a time), the schema created if missing."""
        return self._transaction("read_committed", False, migration=True)

    async def write_batch(self, ops: Sequence[Op]) -> list[Any]:
        """One atomic batch, group-committed (:mod:`wfe_sql.group_commit`): it shares a
        ``READ COMMITTED`` transaction -- ``BEGIN``, one round trip per step (an
        ``executemany`` step is one pipelined round trip), one ``COMMIT`` -- with the
        batches queued meanwhile (``write_groups`` such transactions at a time)."""
        return await self._groups.submit(ops)

    async def write_group(self, batches: list[Sequence[Op]], durable: bool) -> list[Outcome]:
        """One group-commit transaction (overrides :meth:`SqlDriver.write_group`, the
        :class:`GroupCommit` hook: pipelined steps; always synced: writes that need not
        be go to the hint pool, not through groups)."""
        return await self._run(lambda conn: _run_group(conn, batches))

    async def read_batch(self, ops: Sequence[Op]) -> list[Any]:
        """Reading steps on one snapshot (one statement needs no transaction)."""
        if len(ops) == 1 and ops[0].fetch and ops[0].rows is None:
            op = ops[0]
            return [await self.fetchall(op.sql, op.args)]
        return await self._run(
            lambda conn: _run_batch(conn, ops, "repeatable_read", True), read=True
        )

    async def execute(self, sql: str, args: Sequence[Any] = (), *, durable: bool = True) -> int:
        """One writing statement, atomic on its own (autocommit): one round trip.
        ``durable=False`` (lock leases, queue hints) commits without waiting for the disk
        (on the hint pool's ``synchronous_commit=off`` connections)."""

        async def work(conn: asyncpg.Connection) -> int:
            return _rowcount(await conn.execute(sql, *args))

        return await self._run(work, hints=not durable)

    async def execute_returning(
        self, sql: str, args: Sequence[Any] = (), *, durable: bool = True
    ) -> list[Row]:
        """One writing statement with ``RETURNING`` (autocommit): one round trip
        (``durable`` as for :meth:`execute`)."""

        async def work(conn: asyncpg.Connection) -> list[Row]:
            return list(await conn.fetch(sql, *args))

        return await self._run(work, hints=not durable)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """One reading statement (a snapshot by itself): one round trip."""

        async def work(conn: asyncpg.Connection) -> list[Row]:
            return list(await conn.fetch(sql, *args))

        return await self._run(work, read=True)

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """One reading statement; its first row or None."""

        async def work(conn: asyncpg.Connection) -> Row | None:
            row: Row | None = await conn.fetchrow(sql, *args)
            return row

        return await self._run(work, read=True)


class _Session:
    """A pool connection inside a transaction of :class:`PostgresDriver`."""

    __slots__ = ("_conn", "_driver")

    def __init__(self, conn: asyncpg.Connection, driver: PostgresDriver) -> None:
        self._conn = conn
        self._driver = driver

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            return _rowcount(await self._conn.execute(sql, *args))
        except Exception as exc:
            self._driver._raise(exc)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except Exception as exc:
            self._driver._raise(exc)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self._conn.fetch(sql, *args))
        except Exception as exc:
            self._driver._raise(exc)

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        try:
            row: Row | None = await self._conn.fetchrow(sql, *args)
            return row
        except Exception as exc:
            self._driver._raise(exc)


async def _run_group(conn: asyncpg.Connection, batches: list[Sequence[Op]]) -> list[Outcome]:
    """The batches of a group in one ``READ COMMITTED`` transaction (rules in
    :mod:`wfe_sql.group_commit`)."""
    outcomes: list[Outcome] = []
    async with conn.transaction(isolation="read_committed"):
        for ops in batches:
            out: list[Any] = []
            for index, op in enumerate(ops):
                if op.rows is not None:
                    await conn.executemany(op.sql, op.rows)
                    out.append(len(op.rows))
                elif op.fetch:
                    out.append(list(await conn.fetch(op.sql, *op.args)))
                else:
                    count = _rowcount(await conn.execute(op.sql, *op.args))
                    if op.expect is not None and count != op.expect:
                        outcomes.append(skip_or_abort(index, count))
                        break
                    out.append(count)
            else:
                outcomes.append(out)
    return outcomes


async def _run_batch(
    conn: asyncpg.Connection, ops: Sequence[Op], isolation: str, readonly: bool
) -> list[Any]:
    """One transaction running every step; :class:`BatchAborted` rolls it back."""
    out: list[Any] = []
    async with conn.transaction(isolation=isolation, readonly=readonly):
        for index, op in enumerate(ops):
            if op.rows is not None:
                await conn.executemany(op.sql, op.rows)
                out.append(len(op.rows))
            elif op.fetch:
                out.append(list(await conn.fetch(op.sql, *op.args)))
            else:
                count = _rowcount(await conn.execute(op.sql, *op.args))
                if op.expect is not None and count != op.expect:
                    raise BatchAborted(index, count)
                out.append(count)
    return out


def _dispose(task: asyncio.Future[asyncpg.Connection]) -> None:
    """Close the connection an abandoned attempt made, or read its error."""
    if task.cancelled():
        return
    if task.exception() is None:
        task.result().terminate()


async def _exchange(host: str, port: int, data: bytes, limit: float) -> bytes | str | None:
    """Connect, send ``data`` and read what comes back within ``limit`` seconds: the
    bytes (``b""``: closed), ``"silent"``, an error text, or None if no connection."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            await writer.drain()
            return await reader.read(64)
    except TimeoutError:
        return None if writer is None else "silent"
    except OSError as exc:
        return None if writer is None else f"reset the connection ({exc.strerror or exc})"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _shown(reply: bytes) -> str:
    return repr(reply[:40].decode("ascii", "replace").strip())


async def _probe(host: str, port: int, limit: float) -> str | None:
    """What answers at ``host:port``: ``"postgres"``, ``"silent"`` (connected, no
    answer), ``"not:<what it did>"``, or None when no TCP connection could be made.

    First PostgreSQL's SSLRequest, which a server answers at once with one byte (``S``
    or ``N``). A peer that stays silent gets a second connection with a line of text
    (``PING``): line-based services such as Redis answer that, and are then named.
    """
    half = limit / 2
    reply = await _exchange(host, port, _SSL_REQUEST, half)
    if reply is None or reply == "silent":
        if reply is None:
            return None
        text = await _exchange(host, port, b"PING\r\n", half)
        if isinstance(text, bytes) and text:
            hint = " (that is how Redis answers)" if text[:1] in (b"+", b"-") else ""
            return (
                f"not:did not answer the PostgreSQL handshake, and answered {_shown(text)} "
                f"to a line of text{hint}"
            )
        return "silent"
    if isinstance(reply, str):
        return f"not:{reply} on the PostgreSQL handshake"
    if not reply:
        return "not:closed the connection on the PostgreSQL handshake"
    if reply[:1] in (b"S", b"N"):
        return "postgres"
    return f"not:answered {_shown(reply)} to the PostgreSQL handshake"


class Listener:
    """The store's notification listener: one dedicated connection ``LISTEN``-ing on
    :attr:`PostgresDriver.channel`. A notification (payload: a queue name) wakes this
    process's consumers waiting on that queue.

    Started by :meth:`ensure` (idempotent; it waits for the first connection attempt).
    When the connection breaks or a health check (``SELECT 1`` every
    ``listen_keepalive`` seconds) fails, it reconnects with a back-off from 0.05 s to
    2 s, listens again and wakes every waiting consumer (they look at the table: work
    queued meanwhile was not announced). :attr:`listening` tells whether notifications
    flow now; while they do not, queue consumers poll.
    """

    def __init__(self, driver: PostgresDriver) -> None:
        self._driver = driver
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.listening = False
        """Whether the listener is connected and ``LISTEN``-ing now."""
        self.connects = 0
        """How many times it connected (1 + reconnections)."""

    async def ensure(self) -> None:
        """Start listening unless already started; wait (bounded by
        ``connect_timeout``) for the first attempt to connect."""
        task = self._task
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            self._first = loop.create_future()
            self._task = task = loop.create_task(self._run(), name=f"wfe listener {self.channel}")
        first = self._first
        if first is not None and not first.done():
            await asyncio.shield(first)

    @property
    def channel(self) -> str:
        """The channel listened on."""
        return self._driver.channel

    def _resolve_first(self) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    def _wake_all(self) -> None:
        for queue in QueueType:
            local_signal(self._driver.name, queue.value).notify()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if payload in _QUEUE_NAMES:
            local_signal(self._driver.name, payload).notify()

    async def _run(self) -> None:
        driver = self._driver
        wait = Backoff(0.05, maximum=2.0, jitter=0.2)
        failures = 0
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await driver.connect()
                self._conn = conn
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self.channel, self._on_notify)
                self.listening = True
                self.connects += 1
                if failures:
                    _log.warning("listening on %s again after %d failures", driver.name, failures)
                failures = 0
                wait.reset()
                self._resolve_first()
                self._wake_all()  # work queued while we were not listening
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), driver.listen_keepalive)
                        break
                    await conn.fetchval("SELECT 1", timeout=driver.command_timeout)
                _log.info("notification listener on %s lost its connection", driver.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                _log.log(
                    level,
                    "notification listener on %s failed (%s: %s); polling until it reconnects",
                    driver.name,
                    type(exc).__name__,
                    exc,
                )
            finally:
                was = self.listening
                self.listening = False
                self._conn = None
                if conn is not None:
                    conn.terminate()
                self._resolve_first()
                if was:
                    self._wake_all()  # waiters switch to polling
            await asyncio.sleep(next(wait))

    async def close(self) -> None:
        """Stop listening and close the connection (idempotent)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._resolve_first()
        self.listening = False


_QUEUE_NAMES = frozenset(q.value for q in QueueType)
