"""What only the PostgreSQL provider promises: bad input refused clearly and quickly,
migrations safe from several processes, schema isolation, LISTEN/NOTIFY wake-ups,
SKIP LOCKED claims, reconnection after lost connections, URLs, and a host built from a
URL. Every test uses a schema of its own on the real server (dropped afterwards).
Group commit, migrations, round trips and durability settings every SQL dialect shares
are in test_postgres_dialect_suite.py (the wfe_sql.testing suite)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest
from wfe_conformance.scenario_support import wait_until
from wfe_conformance.services import redis_url
from wfe_core.errors import ConcurrencyError, ProviderUnavailable
from wfe_core.models import (
    ExecutionPointer,
    QueueType,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.registry import open_store
from wfe_postgres.testing import drop_schema, new_schema_name, temporary_schema

from wfe_core import HostOptions, StepContext, Workflow, WorkflowBuilder, WorkflowHost
from wfe_postgres import (
    PostgresDriver,
    PostgresLockProvider,
    PostgresPersistenceProvider,
    PostgresQueueProvider,
    parse_postgres_url,
    provider_from_url,
)
from wfe_sql import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

SMALL: dict[str, Any] = {"min_size": 1, "max_size": 4}


# anyio_backend, url, schema and store: see conftest.py


@contextlib.asynccontextmanager
async def raw(url: str, schema: str | None = None) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection (another client of the database)."""
    settings = {"search_path": f'"{schema}"'} if schema else {}
    conn = await asyncpg.connect(parse_postgres_url(url).dsn, server_settings=settings)
    try:
        yield conn
    finally:
        await conn.close()


def instance(pointers: int = 1, **overrides: Any) -> WorkflowInstance:
    values: dict[str, Any] = {"workflow_definition_id": "pg-specific", "data": {"n": 1}}
    values.update(overrides)
    inst = WorkflowInstance(**values)
    for n in range(pointers):
        inst.execution_pointers.append(ExecutionPointer(step_id=n, persistence_data={"n": n}))
    return inst


def with_url(url: str, **changes: str) -> str:
    """``url`` with its user, host, port or database replaced."""
    parsed = parse_postgres_url(url)
    user = changes.get("user", parsed.user)
    password = changes.get("password")
    host = changes.get("host", parsed.host)
    port = changes.get("port", str(parsed.port))
    database = changes.get("database", parsed.database)
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgresql://{auth}{host}:{port}/{database}"


async def refused(make: Callable[[], PostgresPersistenceProvider]) -> tuple[str, float, Any]:
    """Open a provider that must fail; return the message, the seconds it took and the
    chained cause."""
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as raised:
        async with make():
            pass
    return str(raised.value), time.monotonic() - started, raised.value.__cause__


# --------------------------------------------------------------------------------------
# bad input: each refused with a message naming what to fix, within a bounded time
# --------------------------------------------------------------------------------------


async def test_unknown_user_is_named(url: str) -> None:
    bad = with_url(url, user="wfe_no_such_role")
    message, took, cause = await refused(lambda: PostgresPersistenceProvider(bad))
    assert "wfe_no_such_role" in message
    assert "fix the user name in the URL" in message
    assert isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError)
    assert took < 5


async def test_unknown_database_is_said_not_to_exist(url: str) -> None:
    bad = with_url(url, database="wfe_no_such_db")
    message, took, cause = await refused(lambda: PostgresPersistenceProvider(bad))
    assert "database 'wfe_no_such_db' does not exist" in message
    assert "createdb" in message
    assert "fix the database name" in message
    assert isinstance(cause, asyncpg.InvalidCatalogNameError)
    assert took < 5


class _FakeServer:
    """A TCP server on 127.0.0.1 speaking just enough of a protocol for one test."""

    def __init__(self, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]):
        self._handle = handle
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> _FakeServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            with contextlib.suppress(Exception):
                await self._handle(reader, writer)

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


async def _refuse_password(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A PostgreSQL server asking for a password and refusing it, as one with
    ``password`` authentication in pg_hba.conf does (the test server trusts everyone)."""
    length, code = struct.unpack("!ii", await reader.readexactly(8))
    if code == 80877103:  # SSLRequest: no SSL here
        writer.write(b"N")
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        await reader.readexactly(length - 4)
    else:
        await reader.readexactly(length - 8)
    writer.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
    await writer.drain()
    await reader.readexactly(1)  # PasswordMessage
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    await reader.readexactly(length - 4)
    fields = b'SFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user "app"\x00\x00'
    writer.write(b"E" + struct.pack("!i", len(fields) + 4) + fields)
    await writer.drain()


async def test_wrong_password_is_named() -> None:
    async with _FakeServer(_refuse_password) as server:
        bad = f"postgresql://app:wrong@127.0.0.1:{server.port}/test"
        message, took, cause = await refused(lambda: PostgresPersistenceProvider(bad))
    assert "refused the password of user 'app'" in message
    assert "fix the password in the URL" in message
    assert "wrong" not in message  # the password itself is never shown
    assert isinstance(cause, asyncpg.InvalidPasswordError)
    assert took < 5


async def test_closed_port_is_refused_at_once(url: str) -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        bad = with_url(url, host="127.0.0.1", port=str(port))
        message, took, _ = await refused(lambda: PostgresPersistenceProvider(bad))
    assert f"127.0.0.1:{port}" in message
    assert "connection refused" in message
    assert "fix the host and port" in message
    assert took < 2


async def test_silent_host_times_out_within_connect_timeout(url: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, read, never answer

    async with _FakeServer(silent) as server:
        bad = with_url(url, host="127.0.0.1", port=str(server.port))
        message, took, _ = await refused(
            lambda: PostgresPersistenceProvider(bad, connect_timeout=0.6)
        )
    assert "connect_timeout=0.6s" in message
    assert "did not answer the PostgreSQL handshake" in message
    assert took < 3


async def test_redis_port_is_not_postgres() -> None:
    redis = urlsplit(redis_url())
    bad = f"postgresql://postgres@{redis.hostname}:{redis.port or 6379}/test"
    message, took, _ = await refused(lambda: PostgresPersistenceProvider(bad))
    assert "is not a PostgreSQL server" in message
    assert "Redis" in message  # what the port answered
    assert "Check the host and port" in message
    assert took < 4  # found out by the handshake probe, not the 10 s connect timeout


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("mysql://u@h/db", "not a PostgreSQL URL"),
        ("postgresql://u@h/db?max_sise=3", "unknown option 'max_sise'"),
        ("postgresql://u@h/db?max_size=many", "max_size='many'"),
        ("postgresql://u@h:port/db", "is not a number"),
        ("postgresql://u@h:99999/db", "out of range"),
        ("postgresql://u@h/a/b", "contains '/'"),
    ],
)
def test_bad_urls_are_refused(bad: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        provider_from_url(bad)


def test_bad_options_are_refused() -> None:
    base = "postgresql://u@h/db"
    with pytest.raises(ValueError, match="schema must be a PostgreSQL identifier"):
        PostgresDriver(base, schema="no spaces")
    with pytest.raises(ValueError, match="longer than"):
        PostgresDriver(base, schema="s" * 64)
    with pytest.raises(ValueError, match="must not exceed max_size"):
        PostgresDriver(base, min_size=5, max_size=2)
    with pytest.raises(ValueError, match="connect_timeout must be positive"):
        PostgresDriver(base, connect_timeout=0)
    with pytest.raises(ValueError, match="search_path"):
        PostgresDriver(base, server_settings={"search_path": "public"})
    driver = PostgresDriver(base)
    with pytest.raises(ValueError, match="set them there"):
        PostgresLockProvider(driver, max_size=3)


def test_password_never_appears_in_names() -> None:
    driver = PostgresDriver("postgresql://app:s3cret@db.example:6543/orders?schema=billing")
    assert "s3cret" not in driver.name
    assert "s3cret" not in repr(driver)
    assert driver.name == "postgresql://app@db.example:6543/orders (schema billing)"


# --------------------------------------------------------------------------------------
# URLs and options
# --------------------------------------------------------------------------------------


def test_url_forms_and_options() -> None:
    for scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        parsed = parse_postgres_url(f"{scheme}://app@db:6000/orders?sslmode=disable")
        assert (parsed.host, parsed.port, parsed.database, parsed.user) == (
            "db",
            6000,
            "orders",
            "app",
        )
        assert parsed.dsn == "postgresql://app@db:6000/orders?sslmode=disable"
    parsed = parse_postgres_url(
        "postgres://app@db/orders?schema=s1&min_size=2&max_size=7&connect_timeout=1.5"
        "&command_timeout=9&poll_interval=0.5&command_lease=30"
    )
    assert parsed.port == 5432
    assert parsed.options == {
        "schema": "s1",
        "min_size": 2,
        "max_size": 7,
        "connect_timeout": 1.5,
        "command_timeout": 9.0,
        "poll_interval": 0.5,
        "command_lease": 30.0,
    }
    assert "schema" not in parsed.dsn
    store = provider_from_url(
        "postgresql+asyncpg://app@db/orders?schema=s1&max_size=7&poll_interval=0.5",
        command_timeout=3,  # keyword arguments win over the URL
    )
    assert isinstance(store.persistence, PostgresPersistenceProvider)
    assert isinstance(store.lock_provider, PostgresLockProvider)
    assert isinstance(store.queue_provider, PostgresQueueProvider)
    driver = store.persistence.driver
    assert store.lock_provider.driver is driver
    assert store.queue_provider.driver is driver
    assert (driver.schema, driver.max_size, driver.command_timeout) == ("s1", 7, 3.0)
    assert store.queue_provider.poll_interval == 0.5
    assert driver.channel == "s1.wfe_queue"
    long_schema = "s" * 60
    assert len(PostgresDriver("postgresql://u@h/d", schema=long_schema).channel) <= 63


def test_registry_finds_the_provider_for_every_scheme() -> None:
    for scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        store = open_store(f"{scheme}://app@db/orders")
        assert isinstance(store.persistence, PostgresPersistenceProvider)


# --------------------------------------------------------------------------------------
# schema, migrations
# --------------------------------------------------------------------------------------


async def test_schema_is_created_and_holds_every_table(url: str, schema: str) -> None:
    async with PostgresPersistenceProvider(url, schema=schema, **SMALL) as store:
        await store.ensure_store_exists()  # idempotent
        await store.create_workflow(instance(id="w1"))
    async with raw(url) as conn:
        tables = {
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                schema,
            )
        }
        versions = await conn.fetch(f'SELECT version FROM "{schema}".wfe_schema_version')
        public = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name LIKE 'wfe\\_%'"
        )
    assert {"wfe_workflows", "wfe_execution_pointers", "wfe_queue", "wfe_locks"} <= tables
    assert [r[0] for r in versions] == [SCHEMA_VERSION]
    assert public == 0


def test_concurrent_migrations_from_many_processes(url: str) -> None:
    schema = new_schema_name()
    script = textwrap.dedent(
        """
        import asyncio, sys
        from wfe_postgres import PostgresPersistenceProvider

        async def main():
            async with PostgresPersistenceProvider(
                sys.argv[1], schema=sys.argv[2], max_size=1
            ) as store:
                await store.get_runnable_instances(__import__("wfe_core").models.utcnow())
            print("ok")

        asyncio.run(main())
        """
    )
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, url, schema],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=60) for p in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            assert out.strip() == "ok"
    finally:
        asyncio.run(drop_schema(url, schema))


async def test_two_schemas_in_one_database_do_not_see_each_other(url: str) -> None:
    async with temporary_schema(url) as one, temporary_schema(url) as two:
        a = provider_from_url(url, schema=one, **SMALL)
        b = provider_from_url(url, schema=two, **SMALL)
        assert isinstance(a.persistence, PostgresPersistenceProvider)
        assert isinstance(b.persistence, PostgresPersistenceProvider)
        assert isinstance(a.lock_provider, PostgresLockProvider)
        assert isinstance(b.lock_provider, PostgresLockProvider)
        assert isinstance(a.queue_provider, PostgresQueueProvider)
        assert isinstance(b.queue_provider, PostgresQueueProvider)
        try:
            await a.persistence.create_workflow(instance(id="shared-id"))
            await b.persistence.create_workflow(instance(id="shared-id", data={"n": 2}))
            assert (await a.persistence.get_workflow_instance("shared-id")).data == {"n": 1}
            assert (await b.persistence.get_workflow_instance("shared-id")).data == {"n": 2}
            assert await a.lock_provider.acquire_lock("r", 10)
            assert await b.lock_provider.acquire_lock("r", 10)  # another schema's lock
            await a.queue_provider.start()
            await b.queue_provider.start()
            await a.queue_provider.queue_work("only-in-a", QueueType.WORKFLOW)
            assert await b.queue_provider.dequeue_work(QueueType.WORKFLOW, 0.2) is None
            assert await a.queue_provider.dequeue_work(QueueType.WORKFLOW, 0) == "only-in-a"
        finally:
            await a.queue_provider.stop()
            await b.queue_provider.stop()
            await a.lock_provider.stop()
            await b.lock_provider.stop()
            await a.persistence.close()
            await b.persistence.close()


# --------------------------------------------------------------------------------------
# LISTEN/NOTIFY
# --------------------------------------------------------------------------------------


def _as_other_process(queue: PostgresQueueProvider) -> PostgresQueueProvider:
    """Make ``queue`` look like a queue in another process: its in-process signals are
    not those of the consumers here, so only the server's NOTIFY can wake them."""
    queue.driver.name += " [another process]"
    return queue


async def test_blocked_dequeue_wakes_on_notify_from_another_instance(url: str, schema: str) -> None:
    consumer = PostgresQueueProvider(url, schema=schema, poll_interval=30, **SMALL)
    producer = _as_other_process(PostgresQueueProvider(url, schema=schema, **SMALL))
    await consumer.start()
    await producer.start()
    try:
        assert consumer.driver.listener.listening
        sent: list[float] = []

        async def produce() -> None:
            await asyncio.sleep(0.2)  # the consumer is blocked by now
            sent.append(time.monotonic())
            await producer.queue_work("wake-up", QueueType.EVENT)

        task = asyncio.create_task(produce())
        started = time.monotonic()
        got = await consumer.dequeue_work(QueueType.EVENT, 10.0)
        returned = time.monotonic()
        await task
        assert got == "wake-up"
        # no poll for 30 s: only the notification can have woken it
        assert returned - sent[0] < 0.5
        assert returned - started < 2.0
    finally:
        await producer.stop()
        await consumer.stop()


def test_blocked_dequeue_wakes_on_queue_work_from_another_process(url: str) -> None:
    async def main() -> float:
        async with temporary_schema(url) as schema:
            consumer = PostgresQueueProvider(url, schema=schema, poll_interval=30, **SMALL)
            await consumer.start()
            try:
                script = textwrap.dedent(
                    """
                    import asyncio, sys, time
                    from wfe_core.models import QueueType
                    from wfe_postgres import PostgresQueueProvider

                    async def main():
                        queue = PostgresQueueProvider(sys.argv[1], schema=sys.argv[2])
                        await queue.start()
                        print(time.time(), flush=True)
                        await queue.queue_work("from-afar", QueueType.WORKFLOW)
                        await queue.stop()

                    asyncio.run(main())
                    """
                )
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", script, url, schema, stdout=asyncio.subprocess.PIPE
                )
                got = await consumer.dequeue_work(QueueType.WORKFLOW, 30.0)
                returned = time.time()
                out, _ = await proc.communicate()
                assert proc.returncode == 0
                assert got == "from-afar"
                return returned - float(out.split()[0])
            finally:
                await consumer.stop()

    delay = asyncio.run(main())
    assert delay < 1.0  # the consumer polls every 30 s: the NOTIFY woke it


async def test_listener_reconnects_and_listens_again(url: str, schema: str) -> None:
    app = f"wfe-test-{uuid.uuid4().hex[:12]}"
    consumer = PostgresQueueProvider(
        url, schema=schema, poll_interval=30, server_settings={"application_name": app}, **SMALL
    )
    producer = _as_other_process(PostgresQueueProvider(url, schema=schema, **SMALL))
    await consumer.start()
    await producer.start()
    listener = consumer.driver.listener
    try:
        assert listener.connects == 1
        async with raw(url) as conn:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                app,
            )
        assert killed >= 1  # the listener and the pool's connection
        await wait_until(lambda: listener.listening and listener.connects == 2, 5, "reconnect")

        async def produce() -> None:
            await asyncio.sleep(0.1)
            await producer.queue_work("after-restart", QueueType.WORKFLOW)

        task = asyncio.create_task(produce())
        started = time.monotonic()
        assert await consumer.dequeue_work(QueueType.WORKFLOW, 10.0) == "after-restart"
        await task
        assert time.monotonic() - started < 1.0
    finally:
        await producer.stop()
        await consumer.stop()


async def test_work_queued_while_the_listener_was_down_is_found(url: str, schema: str) -> None:
    app = f"wfe-test-{uuid.uuid4().hex[:12]}"
    consumer = PostgresQueueProvider(
        url, schema=schema, poll_interval=30, server_settings={"application_name": app}, **SMALL
    )
    await consumer.start()

    async def dequeue() -> str | None:
        # The kill may land while a dequeue is mid-query: that call fails with
        # ProviderUnavailable and the next one reconnects (as the host's consumer does).
        while True:
            try:
                return await consumer.dequeue_work(QueueType.INDEX, 25.0)
            except ProviderUnavailable:
                await asyncio.sleep(0.05)

    try:
        waiter = asyncio.create_task(dequeue())
        await asyncio.sleep(0.1)
        async with raw(url, schema) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                app,
            )
            # queued without a notification (as if sent while nobody listened)
            await conn.execute("INSERT INTO wfe_queue (queue, item) VALUES ('index', 'quiet')")
        with anyio.fail_after(15):  # well under the 30 s poll: the reconnect finds it
            assert await waiter == "quiet"
    finally:
        await consumer.stop()


async def test_pool_reconnects_after_its_connections_are_killed(url: str, schema: str) -> None:
    app = f"wfe-test-{uuid.uuid4().hex[:12]}"
    async with PostgresPersistenceProvider(
        url, schema=schema, server_settings={"application_name": app}, **SMALL
    ) as store:
        await store.create_workflow(instance(id="before"))
        async with raw(url) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                app,
            )
        failures: list[BaseException] = []
        with anyio.fail_after(5):
            while True:
                try:
                    await store.create_workflow(instance(id=new_id()))
                    break
                except ProviderUnavailable as exc:  # at most the call that found it broken
                    failures.append(exc)
                    await asyncio.sleep(0.01)
        assert len(failures) <= 1
        assert (await store.get_workflow_instance("before")).id == "before"


# --------------------------------------------------------------------------------------
# SKIP LOCKED claims
# --------------------------------------------------------------------------------------


async def test_dequeue_skips_a_row_another_transaction_holds(url: str, schema: str) -> None:
    queue = PostgresQueueProvider(url, schema=schema, **SMALL)
    await queue.start()
    try:
        await queue.queue_work("first", QueueType.WORKFLOW)
        await queue.queue_work("second", QueueType.WORKFLOW)
        async with raw(url, schema) as conn, conn.transaction():
            await conn.execute("SELECT * FROM wfe_queue WHERE item = 'first' FOR UPDATE")
            with anyio.fail_after(2):  # does not wait for the held row
                assert await queue.dequeue_work(QueueType.WORKFLOW, 0) == "second"
        assert await queue.dequeue_work(QueueType.WORKFLOW, 0) == "first"
    finally:
        await queue.stop()


async def test_concurrent_consumers_across_pools_take_each_item_once(url: str, schema: str) -> None:
    queues = [PostgresQueueProvider(url, schema=schema, **SMALL) for _ in range(4)]
    for q in queues:
        await q.start()
    ids = [f"item-{n:03d}" for n in range(200)]
    taken: list[str] = []
    try:

        async def consume(q: PostgresQueueProvider) -> None:
            while True:
                item = await q.dequeue_work(QueueType.WORKFLOW, 0.3)
                if item is None:
                    return
                taken.append(item)

        async def produce() -> None:
            for i in ids:
                await queues[0].queue_work(i, QueueType.WORKFLOW)

        with anyio.fail_after(30):
            await asyncio.gather(produce(), *(consume(q) for q in queues for _ in range(3)))
        counts = Counter(taken)
        assert set(counts) == set(ids)
        assert max(counts.values()) == 1
    finally:
        for q in queues:
            await q.stop()


async def test_scheduled_commands_go_to_one_handler_across_pools(url: str, schema: str) -> None:
    stores = [PostgresPersistenceProvider(url, schema=schema, **SMALL) for _ in range(3)]
    try:
        for s in stores:
            await s.ensure_store_exists()
        due = datetime.now(UTC) - timedelta(seconds=1)
        for n in range(60):
            await stores[0].schedule_command(
                ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, f"wf-{n}", due)
            )
        handled: list[str] = []

        async def handler(command: ScheduledCommand) -> None:
            handled.append(command.data)
            await asyncio.sleep(0)

        with anyio.fail_after(20):
            await asyncio.gather(
                *(s.process_commands(datetime.now(UTC), handler) for s in stores for _ in range(2))
            )
        assert sorted(handled) == sorted(f"wf-{n}" for n in range(60))
    finally:
        for s in stores:
            await s.close()


async def test_stale_persist_loses_across_pools(url: str, schema: str) -> None:
    async with (
        PostgresPersistenceProvider(url, schema=schema, **SMALL) as one,
        PostgresPersistenceProvider(url, schema=schema, **SMALL) as two,
    ):
        await one.create_workflow(instance(id="w"))
        a = await one.get_workflow_instance("w")
        b = await two.get_workflow_instance("w")
        a.data = {"by": "one"}
        b.data = {"by": "two"}
        results = await asyncio.gather(
            one.persist_workflow(a), two.persist_workflow(b), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["ConcurrencyError", "NoneType"]
        assert any(isinstance(r, ConcurrencyError) for r in results)


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------


async def test_loading_an_instance_is_one_statement(
    url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(What a checkpoint sends, and that checkpoints wait for the disk while lock and
    queue writes do not, are in test_postgres_dialect_suite.py.)"""
    sent: list[str] = []
    driver = PostgresDriver(url, schema=schema, **SMALL)
    connect = driver.connect

    async def logged(*, hints: bool = False) -> asyncpg.Connection:
        conn = await connect(hints=hints)
        conn.add_query_logger(lambda query: sent.append(query.query.split()[0].rstrip(";").upper()))
        return conn

    monkeypatch.setattr(driver, "connect", logged)
    async with PostgresPersistenceProvider(driver) as store:
        inst = instance(pointers=50)
        await store.create_workflow(inst)
        sent.clear()
        loaded = await store.get_workflow_instance(inst.id)
        # one statement (one snapshot): the header row, then the pointer rows
        assert sent == ["SELECT"]
    assert len(loaded.execution_pointers) == 50


async def test_lock_and_queue_writes_use_a_small_pool_of_their_own(url: str, schema: str) -> None:
    store = provider_from_url(url, schema=schema, **SMALL)
    assert isinstance(store.persistence, PostgresPersistenceProvider)
    driver = store.persistence.driver
    async with store.persistence:
        assert store.lock_provider is not None
        assert await store.lock_provider.acquire_lock("r", 5)  # runs on the hint pool
        hint_pool = await driver.pool(hints=True)
        assert hint_pool is not await driver.pool()
        assert hint_pool.get_max_size() == 2
        await store.lock_provider.stop()
    unified = PostgresDriver(url, schema=schema, hint_pool_size=0, **SMALL)
    try:
        assert await unified.pool(hints=True) is await unified.pool()
    finally:
        await unified.close()


# --------------------------------------------------------------------------------------
# a host from a URL, end to end; event-to-resume latency
# --------------------------------------------------------------------------------------

_resumed: dict[str, float] = {}  # workflow id -> when the step after the event ran
_resumed_signal: dict[str, asyncio.Event] = {}


class EventLatencyWorkflow(Workflow[dict[str, Any]]):
    """Waits for ``go``/<key> then records when it resumed."""

    id = "pg-event-latency"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        def resumed(context: StepContext[dict[str, Any]]) -> None:
            _resumed[context.workflow.id] = time.perf_counter()
            signal = _resumed_signal.get(context.workflow.id)
            if signal is not None:
                signal.set()

        builder.start_with(lambda context: None).wait_for("go", key=lambda data: data["key"]).then(
            resumed
        )


async def test_host_from_url_runs_a_workflow_with_an_event(url: str, schema: str) -> None:
    host = WorkflowHost.from_url(
        f"{url}?schema={schema}&max_size=4",
        options=HostOptions(poll_interval=0.2, idle_time=0.01),
    )
    assert isinstance(host.persistence, PostgresPersistenceProvider)
    assert isinstance(host.lock_provider, PostgresLockProvider)
    assert isinstance(host.queue_provider, PostgresQueueProvider)
    host.register_workflow(EventLatencyWorkflow())
    async with host:
        wid = await host.start_workflow(EventLatencyWorkflow.id, {"key": "k1"})

        async def waiting() -> bool:
            inst = await host.get_workflow_instance(wid)
            return any(
                p.event_name == "go" and not p.event_published for p in inst.execution_pointers
            )

        await wait_until(waiting, 10, "the workflow to wait for its event")
        await host.publish_event("go", "k1", {"ok": True})
        done = await host.wait_for_workflow(wid, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE


async def test_event_to_resume_latency_probe(url: str, schema: str) -> None:
    """Measures (does not assert) how long a published event takes to resume its
    workflow on a host built from a URL; run with ``-s`` to see the figures."""
    host = WorkflowHost.from_url(
        f"{url}?schema={schema}", options=HostOptions(poll_interval=1.0, idle_time=0.01)
    )
    host.register_workflow(EventLatencyWorkflow())
    count = int(os.environ.get("WFE_LATENCY_EVENTS", "200"))
    latencies: list[float] = []
    async with host:
        ids = [
            await host.start_workflow(EventLatencyWorkflow.id, {"key": f"k{n}"})
            for n in range(count)
        ]
        persistence = host.persistence

        async def subscribed(n: int) -> bool:
            return bool(await persistence.get_subscriptions("go", f"k{n}", datetime.now(UTC)))

        for n, wid in enumerate(ids):
            await wait_until(lambda n=n: subscribed(n), 30, f"workflow {n} to wait")
            signal = _resumed_signal[wid] = asyncio.Event()
            started = time.perf_counter()
            await host.publish_event("go", f"k{n}")
            with anyio.fail_after(10):
                await signal.wait()
            latencies.append(_resumed.pop(wid) - started)
            del _resumed_signal[wid]
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(f"\nevent-to-resume latency over {count} events: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert len(latencies) == count
