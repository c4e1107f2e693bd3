"""What only the SQLite provider promises: bad input refused clearly with nothing
half-written, migrations from several processes, its pragmas, writes proportional to
what changed, index use, URLs, and several providers (as several processes) on one file.
Group commit, migrations, round trips and durability settings every SQL dialect shares
are in test_sqlite_dialect_suite.py (the wfe_sql.testing suite)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from wfe_core.errors import ProviderUnavailable
from wfe_core.models import (
    ExecutionPointer,
    QueueType,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.registry import StoreComponents, open_store

from wfe_sql import SCHEMA_VERSION
from wfe_sqlite import (
    SqliteDriver,
    SqliteLockProvider,
    SqlitePersistenceProvider,
    SqliteQueueProvider,
    parse_sqlite_url,
    provider_from_url,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2031, 1, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "wfe.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqlitePersistenceProvider]:
    async with SqlitePersistenceProvider(db) as p:
        yield p


def instance(pointers: int = 1, **overrides: Any) -> WorkflowInstance:
    values: dict[str, Any] = {"workflow_definition_id": "specific", "data": {"n": 1}}
    values.update(overrides)
    inst = WorkflowInstance(**values)
    for n in range(pointers):
        inst.execution_pointers.append(ExecutionPointer(step_id=n, persistence_data={"n": n}))
    return inst


def raw_rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


async def test_missing_folder_is_refused_and_nothing_created(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    provider = SqlitePersistenceProvider(missing / "wfe.db")
    with pytest.raises(ProviderUnavailable) as raised:
        async with provider:
            pass
    message = str(raised.value)
    assert "does not exist" in message
    assert str(missing) in message
    assert "mkdir" in message
    assert not (tmp_path / "no").exists()


async def test_folder_given_as_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match="is a folder"):
        async with SqlitePersistenceProvider(tmp_path):
            pass


async def test_file_that_is_not_sqlite_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(ProviderUnavailable) as raised:
        async with SqlitePersistenceProvider(path):
            pass
    assert "is not a SQLite database" in str(raised.value)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == content
    assert not (tmp_path / "notes.db-wal").exists()


async def test_database_locked_longer_than_busy_timeout(db: Path) -> None:
    async with SqlitePersistenceProvider(db, busy_timeout=0.2) as provider:
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable) as raised:
                await provider.create_workflow(instance(id="locked-out"))
            waited = time.monotonic() - started
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        message = str(raised.value)
        assert "is locked" in message
        assert "busy_timeout=0.2s" in message
        assert 0.15 <= waited < 3.0
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        # nothing half-written, and the provider works once the lock is gone
        assert raw_rows(db, "SELECT id FROM wfe_workflows") == []
        assert await provider.create_workflow(instance(id="after")) == "after"


async def test_a_write_waits_for_another_process_lock_in_short_pauses(db: Path) -> None:
    """A group commit that finds the write lock held by another connection tries again
    in short pauses (many ``BEGIN IMMEDIATE`` attempts, not SQLite's 1-2-5-10 ms busy
    handler), commits once the lock is free, and leaves the busy timeout as it was."""
    async with SqlitePersistenceProvider(db, busy_timeout=30) as provider:
        await provider.create_workflow(instance(id="first"))  # the writer is open
        begins: list[str] = []

        def trace(raw: sqlite3.Connection) -> None:
            raw.set_trace_callback(
                lambda sql: begins.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None
            )

        await provider.driver.on_writer(trace)
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            begins.clear()
            waiting = asyncio.create_task(provider.create_workflow(instance(id="waited")))
            for _ in range(3000):
                if len(begins) >= 5:
                    break
                await asyncio.sleep(0.01)
            assert len(begins) >= 5, begins
            assert not waiting.done()
            blocker.execute("COMMIT")
        finally:
            blocker.close()
        with anyio.fail_after(30):
            assert await waiting == "waited"
        await provider.driver.on_writer(lambda raw: raw.set_trace_callback(None))
        assert await provider.driver.pragma("busy_timeout") == 30000
    assert sorted(r[0] for r in raw_rows(db, "SELECT id FROM wfe_workflows")) == [
        "first",
        "waited",
    ]


async def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="synchronous must be one of"):
        SqlitePersistenceProvider("x.db", synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="busy_timeout"):
        SqlitePersistenceProvider("x.db", busy_timeout=-1)
    with pytest.raises(ValueError, match="non-empty"):
        SqliteDriver("")


async def test_too_old_sqlite_library_is_named(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(ProviderUnavailable, match=r"needs SQLite 3\.35\.0 or newer.*3\.31\.1"):
        async with SqlitePersistenceProvider(db):
            pass
    assert db.name not in os.listdir(db.parent)


async def test_closed_provider_refuses_calls(db: Path) -> None:
    provider = SqlitePersistenceProvider(db)
    async with provider:
        await provider.create_workflow(instance())
    with pytest.raises(ProviderUnavailable, match="closed"):
        await provider.get_runnable_instances(T0)


# --------------------------------------------------------------------------------------
# migrations from several processes (the shared ones: test_sqlite_dialect_suite.py)
# --------------------------------------------------------------------------------------


def test_processes_migrate_one_new_file_concurrently(db: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from wfe_sqlite import SqlitePersistenceProvider
        from wfe_core.models import WorkflowInstance

        async def main():
            async with SqlitePersistenceProvider(sys.argv[1]) as p:
                await p.create_workflow(WorkflowInstance(workflow_definition_id="mp"))

        asyncio.run(main())
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db)], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert raw_rows(db, "SELECT version FROM wfe_schema_version") == [(SCHEMA_VERSION,)]
    assert raw_rows(db, "SELECT COUNT(*) FROM wfe_workflows") == [(3,)]
    assert raw_rows(db, "PRAGMA journal_mode") == [("wal",)]


# --------------------------------------------------------------------------------------
# pragmas and connections (checkpoints vs hints: test_sqlite_dialect_suite.py too)
# --------------------------------------------------------------------------------------


async def test_durable_by_default(store: SqlitePersistenceProvider, db: Path) -> None:
    await store.create_workflow(instance())
    assert await store.driver.pragma("journal_mode") == "wal"
    assert await store.driver.pragma("synchronous") == 2  # FULL
    assert await store.driver.pragma("busy_timeout") == 5000
    assert raw_rows(db, "PRAGMA journal_mode") == [("wal",)]  # stored in the file


async def test_synchronous_normal_option(db: Path) -> None:
    async with SqlitePersistenceProvider(db, synchronous="normal", busy_timeout=12) as p:
        await p.create_workflow(instance())
        assert await p.driver.pragma("synchronous") == 1  # NORMAL
        assert await p.driver.pragma("busy_timeout") == 12000


async def test_checkpoints_run_at_full_while_hints_interleave(db: Path) -> None:
    components = provider_from_url(f"sqlite:///{db}")
    persistence, lock, queue = (
        components.persistence,
        components.lock_provider,
        components.queue_provider,
    )
    assert isinstance(persistence, SqlitePersistenceProvider)
    assert lock is not None
    assert queue is not None
    log = StatementLog()
    async with persistence:
        await lock.start()
        await queue.start()
        await log.install(persistence)

        async def hints(n: int) -> None:
            await lock.acquire_lock(f"r{n}", 5)
            await queue.queue_work(f"w{n}", QueueType.WORKFLOW)
            await lock.release_lock(f"r{n}")

        async def checkpoint() -> None:
            wid = await persistence.create_workflow(instance())
            loaded = await persistence.get_workflow_instance(wid)
            loaded.description = "x"
            await persistence.persist_workflow(loaded)

        await asyncio.gather(*(hints(n) for n in range(30)), *(checkpoint() for _ in range(30)))
        await queue.stop()
        await lock.stop()
    # Writes are group-committed: a transaction may hold checkpoints and hints together.
    # Every transaction that writes a workflow must run at FULL; hint-only ones may not.
    level, begun_at, checkpoints, workflow_writes = "FULL", "", 0, 0
    for statement in log.statements:
        text = " ".join(statement.upper().split())
        if text.startswith("PRAGMA SYNCHRONOUS"):
            level = text.rsplit("=", 1)[1].strip()
        elif text.startswith("BEGIN IMMEDIATE"):
            begun_at, counted = level, False
        elif text.startswith(("INSERT INTO WFE_WORKFLOWS", "UPDATE WFE_WORKFLOWS")):
            workflow_writes += 1
            assert begun_at == "FULL", "a checkpoint transaction ran without synchronous=FULL"
            if not counted:
                checkpoints, counted = checkpoints + 1, True
    # 60 write batches (30 creates, 30 checkpoints) in at most 60 transactions
    assert workflow_writes == 60
    assert 1 <= checkpoints <= 60
    assert "NORMAL" in {s.upper().rsplit("=", 1)[-1].strip() for s in log.statements}


async def test_memory_database_is_private_and_works(tmp_path: Path) -> None:
    async with (
        SqlitePersistenceProvider(":memory:") as a,
        SqlitePersistenceProvider(":memory:") as b,
    ):
        wid = await a.create_workflow(instance())
        assert (await a.get_workflow_instance(wid)).id == wid
        assert await b.get_workflow_instances([wid]) == []
    assert os.listdir(tmp_path) == []


async def test_cancelled_writes_finish_before_the_cancellation(
    store: SqlitePersistenceProvider,
) -> None:
    wid = await store.create_workflow(instance(pointers=50))
    for _ in range(20):
        loaded = await store.get_workflow_instance(wid)
        revision, before = loaded.revision, loaded.data
        loaded.data = {"n": revision}
        loaded.execution_pointers[-1].retry_count = revision
        task = asyncio.ensure_future(store.persist_workflow(loaded))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the cancelled persist committed whole or not at all, and is over: what is
        # read now is final, and the store keeps working
        current = await store.get_workflow_instance(wid)
        if current.revision == revision + 1:
            assert current.data == {"n": revision}
            assert current.execution_pointers[-1].retry_count == revision
        else:
            assert current.revision == revision
            assert current.data == before
        current.description = "after a cancellation"
        await store.persist_workflow(current)


# --------------------------------------------------------------------------------------
# writes proportional to the change
# --------------------------------------------------------------------------------------


class StatementLog:
    """Records every statement the writer runs (a sqlite3 trace callback)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    async def install(self, provider: SqlitePersistenceProvider) -> None:
        def hook(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(self.statements.append)

        await provider.driver.on_writer(hook)

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.statements if s.lstrip().upper().startswith(prefix.upper()))


async def changes(provider: SqlitePersistenceProvider) -> int:
    return await provider.driver.on_writer(lambda conn: conn.total_changes)


async def test_persist_writes_only_changed_pointers(store: SqlitePersistenceProvider) -> None:
    wid = await store.create_workflow(instance(pointers=2_000))
    loaded = await store.get_workflow_instance(wid)
    log = StatementLog()
    await log.install(store)
    before = await changes(store)
    loaded.execution_pointers[1234].retry_count = 7
    await store.persist_workflow(loaded)
    # one header row and one pointer row: nothing else was written
    assert await changes(store) - before == 2
    assert log.count("INSERT INTO wfe_execution_pointers") == 1
    assert log.count("UPDATE wfe_workflows") == 1
    assert log.count("BEGIN IMMEDIATE") == 1
    assert log.count("COMMIT") == 1
    reloaded = await store.get_workflow_instance(wid)
    assert [p.retry_count for p in reloaded.execution_pointers].count(7) == 1
    assert reloaded.execution_pointers[1234].retry_count == 7
    assert [p.id for p in reloaded.execution_pointers] == [p.id for p in loaded.execution_pointers]


async def test_header_only_persist_writes_no_pointer(store: SqlitePersistenceProvider) -> None:
    wid = await store.create_workflow(instance(pointers=300))
    loaded = await store.get_workflow_instance(wid)
    before = await changes(store)
    loaded.description = "header only"
    await store.persist_workflow(loaded)
    assert await changes(store) - before == 1


async def test_new_pointers_are_appended_in_creation_order(
    store: SqlitePersistenceProvider,
) -> None:
    wid = await store.create_workflow(instance(pointers=3))
    loaded = await store.get_workflow_instance(wid)
    added = [ExecutionPointer(step_id=10 + n) for n in range(5)]
    for pointer in added:
        loaded.execution_pointers.append(pointer)
    loaded.execution_pointers[0].active = False
    before = await changes(store)
    await store.persist_workflow(loaded)
    assert await changes(store) - before == 1 + 5 + 1
    ordinals = raw_rows(
        Path(store.driver.path),
        "SELECT ordinal FROM wfe_execution_pointers WHERE workflow_id = ? ORDER BY ordinal",
        (wid,),
    )
    assert [o for (o,) in ordinals] == list(range(8))
    reloaded = await store.get_workflow_instance(wid)
    assert [p.step_id for p in reloaded.execution_pointers] == [0, 1, 2, 10, 11, 12, 13, 14]


# --------------------------------------------------------------------------------------
# index use: look-ups independent of finished instances and processed events
# --------------------------------------------------------------------------------------


async def test_hot_lookups_use_their_indexes(store: SqlitePersistenceProvider) -> None:
    from wfe_sql.statements import ProviderStatements

    s: ProviderStatements = store._stmts

    async def plan(sql: str, n: int) -> str:
        rows = await store.driver.fetchall("EXPLAIN QUERY PLAN " + sql, [None] * n)
        return " | ".join(str(r[3]) for r in rows)

    expected = {
        "runnable_workflows": "wfe_ix_workflows_runnable",
        "runnable_events": "wfe_ix_events_runnable",
        "topic_subscriptions": "wfe_ix_subscriptions_topic",
        "first_open_subscription": "wfe_ix_subscriptions_topic",
        "select_pointers": "wfe_ix_pointers_order",
        "select_errors": "wfe_ix_errors_workflow",
        "claim_commands": "wfe_ix_commands_due",
    }
    for name, index in expected.items():
        stmt = getattr(s, name)
        text = await plan(stmt.sql, len(stmt.names))
        assert index in text, f"{name}: {text}"
        assert "SCAN" not in text, f"{name}: {text}"
    partial = raw_rows(
        Path(store.driver.path),
        "SELECT name, sql FROM sqlite_master WHERE name IN "
        "('wfe_ix_workflows_runnable', 'wfe_ix_events_runnable')",
    )
    assert all(" WHERE " in sql for _, sql in partial)


# --------------------------------------------------------------------------------------
# several providers on one file (as several processes)
# --------------------------------------------------------------------------------------


async def test_writers_on_separate_connections_race_safely(db: Path) -> None:
    async with SqlitePersistenceProvider(db) as a, SqlitePersistenceProvider(db) as b:
        wid = await a.create_workflow(instance())
        copies = [await a.get_workflow_instance(wid), await b.get_workflow_instance(wid)]
        results = await asyncio.gather(
            a.persist_workflow(copies[0]), b.persist_workflow(copies[1]), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["ConcurrencyError", "NoneType"]
        assert (await b.get_workflow_instance(wid)).revision == 2


async def test_commands_go_to_one_handler_across_providers(db: Path) -> None:
    async with SqlitePersistenceProvider(db) as a, SqlitePersistenceProvider(db) as b:
        datas = [new_id() for _ in range(40)]
        for d in datas:
            await a.schedule_command(ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, d, T0))
        handled: Counter[str] = Counter()

        async def handler(command: ScheduledCommand) -> None:
            await asyncio.sleep(0)
            handled[command.data] += 1

        counts = await asyncio.gather(*(p.process_commands(T0, handler) for p in (a, b, a, b)))
        assert sum(counts) == 40
        assert handled == Counter(dict.fromkeys(datas, 1))


async def test_claim_of_a_crashed_processor_expires(db: Path) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)
    async with (
        SqlitePersistenceProvider(db, command_lease=60) as crashed,
        SqlitePersistenceProvider(db, clock=lambda: later) as survivor,
    ):
        await crashed.schedule_command(
            ScheduledCommand(ScheduledCommand.PROCESS_EVENT, "evt-1", now - timedelta(seconds=1))
        )
        started = asyncio.Event()

        async def hangs(command: ScheduledCommand) -> None:
            started.set()
            await asyncio.sleep(3600)  # "crashes" here: never returns

        stuck = asyncio.ensure_future(crashed.process_commands(now, hangs))
        await asyncio.wait_for(started.wait(), 5)
        seen: list[str] = []

        async def record(command: ScheduledCommand) -> None:
            seen.append(command.data)

        # the claim is live for the crashed processor's own clock...
        assert await crashed.process_commands(now, record) == 0
        # ...and expired for a processor whose clock is past the lease
        assert await survivor.process_commands(later, record) == 1
        assert seen == ["evt-1"]
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert await survivor.process_commands(later, record) == 0


async def test_queue_consumer_on_another_connection_wakes_promptly(db: Path) -> None:
    producer, consumer = SqliteQueueProvider(db), SqliteQueueProvider(db)
    await producer.start()
    await consumer.start()
    try:
        got: list[str | None] = []

        async def consume() -> None:
            got.append(await consumer.dequeue_work(QueueType.EVENT, 5.0))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)
            started = time.monotonic()
            await producer.queue_work("e-1", QueueType.EVENT)
        assert got == ["e-1"]
        assert time.monotonic() - started < 0.5
    finally:
        await producer.stop()
        await consumer.stop()


async def test_queue_sees_items_written_by_another_process(db: Path) -> None:
    queue = SqliteQueueProvider(db, poll_interval=0.01)
    await queue.start()
    try:
        conn = sqlite3.connect(db)  # an outside writer: no in-process wake-up
        conn.execute("INSERT INTO wfe_queue (queue, item) VALUES ('workflow', 'w-9')")
        conn.commit()
        conn.close()
        with anyio.fail_after(2):
            assert await queue.dequeue_work(QueueType.WORKFLOW, 1.0) == "w-9"
        started = time.monotonic()
        assert await queue.dequeue_work(QueueType.WORKFLOW, 0.1) is None
        assert 0.09 <= time.monotonic() - started < 1.0
    finally:
        await queue.stop()


async def test_stop_wakes_a_blocked_consumer(db: Path) -> None:
    queue = SqliteQueueProvider(db)
    await queue.start()
    result: list[str | None] = ["unset"]

    async def consume() -> None:
        result[0] = await queue.dequeue_work(QueueType.WORKFLOW, 30.0)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)
            await queue.stop()
    assert result == [None]


async def test_locks_exclude_across_connections_and_expire(db: Path) -> None:
    a, b = SqliteLockProvider(db), SqliteLockProvider(db)
    await a.start()
    await b.start()
    try:
        assert await a.acquire_lock("res", 0.1)
        assert not await b.acquire_lock("res", 5)
        rows = raw_rows(db, "SELECT resource, owner FROM wfe_locks")
        assert rows == [("res", a.owner_id)]
        with anyio.fail_after(2):
            while True:
                if await b.acquire_lock("res", 5):
                    break
                await anyio.sleep(0.01)
        assert not await a.renew_lock("res", 5)
    finally:
        await a.stop()
        await b.stop()
    assert raw_rows(db, "SELECT COUNT(*) FROM wfe_locks") == [(0,)]


# --------------------------------------------------------------------------------------
# URLs and the entry point
# --------------------------------------------------------------------------------------


def test_url_forms() -> None:
    assert parse_sqlite_url("sqlite:///wfe.db") == ("wfe.db", {})
    assert parse_sqlite_url("sqlite:///data/wfe.db") == ("data/wfe.db", {})
    assert parse_sqlite_url("sqlite:////var/lib/wfe.db") == ("/var/lib/wfe.db", {})
    assert parse_sqlite_url("sqlite+aiosqlite:////tmp/x.db") == ("/tmp/x.db", {})
    assert parse_sqlite_url("sqlite://") == (":memory:", {})
    assert parse_sqlite_url("sqlite:///:memory:") == (":memory:", {})
    assert parse_sqlite_url("sqlite:///my%20flows.db") == ("my flows.db", {})
    assert parse_sqlite_url("sqlite:///w.db?synchronous=NORMAL&busy_timeout=2.5") == (
        "w.db",
        {"synchronous": "NORMAL", "busy_timeout": 2.5},
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite://host/wfe.db", "names a host"),
        ("sqlite:///w.db?colour=blue", "unknown option 'colour'"),
        ("sqlite:///w.db?busy_timeout=soon", "not a valid float"),
        ("postgresql://x/y", "not a SQLite URL"),
    ],
)
def test_bad_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        provider_from_url(url)


async def test_relative_url_is_resolved_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    components = open_store("sqlite:///relative.db")
    assert isinstance(components, StoreComponents)
    persistence = components.persistence
    assert isinstance(persistence, SqlitePersistenceProvider)
    monkeypatch.chdir("/")  # later changes of folder do not move the store
    async with persistence as p:
        await p.create_workflow(instance())
    assert (tmp_path / "relative.db").exists()


async def test_absolute_url_with_options_and_shared_connections(tmp_path: Path) -> None:
    path = tmp_path / "abs.db"
    components = open_store(f"sqlite:///{path}?synchronous=NORMAL", busy_timeout=3)
    persistence = components.persistence
    assert isinstance(persistence, SqlitePersistenceProvider)
    lock, queue = components.lock_provider, components.queue_provider
    assert isinstance(lock, SqliteLockProvider)
    assert isinstance(queue, SqliteQueueProvider)
    assert persistence.driver is lock.driver is queue.driver
    assert persistence.driver.path == str(path)
    assert persistence.driver.synchronous == "NORMAL"
    assert persistence.driver.busy_timeout == 3
    async with persistence:
        await lock.start()
        await queue.start()
        await queue.queue_work("x", QueueType.WORKFLOW)
        assert await queue.dequeue_work(QueueType.WORKFLOW, 0) == "x"
        await queue.stop()
        await lock.stop()
        assert persistence.driver.attached == 1  # the connections stay for the store
        await persistence.create_workflow(instance())
    assert persistence.driver.attached == 0


async def test_host_from_url_runs_a_workflow(tmp_path: Path) -> None:
    from wfe_core import Workflow, WorkflowBuilder, WorkflowHost

    steps: list[str] = []

    class Hello(Workflow[dict[str, Any]]):
        id = "sqlite-hello"
        version = 1
        data_type = dict

        def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
            def first(context: Any) -> None:
                steps.append("first")

            def second(context: Any) -> None:
                steps.append("second")

            builder.start_with(first).then(second)

    url = f"sqlite:///{tmp_path / 'host.db'}"
    host = WorkflowHost.from_url(url)
    host.register_workflow(Hello())
    async with host:
        wid = await host.start_workflow("sqlite-hello", {"x": 1})
        done = await host.wait_for_workflow(wid, timeout=10)
    assert done.status is WorkflowStatus.COMPLETE
    assert steps == ["first", "second"]
    assert raw_rows(tmp_path / "host.db", "SELECT status FROM wfe_workflows") == [("complete",)]
