"""The hand-over of work to an aiosqlite connection's thread (``wfe_sqlite.driver``).

wfe-sqlite hands whole units of work to the connection's thread in one hop through
aiosqlite's public API: the connection is opened with sqlite3's ``factory=`` (passed on
by ``aiosqlite.connect``), and a unit travels as the parameters of aiosqlite's
``Connection.execute`` to the raw connection's overridden ``execute``. These tests pin
what that relies on -- so an aiosqlite release that changes it fails here, loudly -- and
how a unit outlives a caller that is gone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from wfe_sqlite.driver import SqliteDriver, _Connection, _in_thread


def _one(raw: sqlite3.Connection) -> int:
    return int(raw.execute("SELECT 1").fetchone()[0])


async def _open(path: Path) -> aiosqlite.Connection:
    return await aiosqlite.connect(path, isolation_level=None, factory=_Connection)


def test_aiosqlite_passes_the_factory_on_and_runs_units_on_its_thread(tmp_path: Path) -> None:
    async def check() -> None:
        conn = await _open(tmp_path / "x.db")
        try:
            kind = await _in_thread(conn, lambda raw: type(raw))
            assert kind is _Connection
            here = threading.get_ident()
            first = await _in_thread(conn, lambda raw: threading.get_ident())
            await conn.execute("CREATE TABLE t (x INTEGER)")  # plain calls still work
            await conn.execute("INSERT INTO t VALUES (?)", (7,))
            assert list(await conn.execute_fetchall("SELECT x FROM t")) == [(7,)]
            second = await _in_thread(conn, lambda raw: threading.get_ident())
            assert first == second != here  # aiosqlite's own thread, every time
            assert await _in_thread(conn, _one) == 1
        finally:
            await conn.close()

    asyncio.run(check())


def test_a_units_exception_reaches_its_caller(tmp_path: Path) -> None:
    def fail(raw: sqlite3.Connection) -> None:
        raw.execute("SELECT * FROM no_such_table")

    async def check() -> None:
        conn = await _open(tmp_path / "x.db")
        try:
            with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
                await _in_thread(conn, fail)
            assert await _in_thread(conn, _one) == 1
        finally:
            await conn.close()
        with pytest.raises(ValueError, match=r"no active connection|closed"):
            await _in_thread(conn, _one)

    asyncio.run(check())


def test_a_unit_never_reaches_plain_sqlite3_unnoticed(tmp_path: Path) -> None:
    """Without the factory (or should aiosqlite stop handing the parameters on as they
    are), the unit lands in sqlite3's own ``execute``, which rejects it: nothing runs."""
    ran: list[int] = []

    async def check() -> None:
        conn = await aiosqlite.connect(tmp_path / "x.db")
        try:
            with pytest.raises(sqlite3.ProgrammingError):
                await _in_thread(conn, lambda raw: ran.append(1))
        finally:
            await conn.close()

    asyncio.run(check())
    assert ran == []


def _blocked_thread(conn: aiosqlite.Connection) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Occupy the connection's thread until the returned gate is set."""
    gate = threading.Event()
    return gate, asyncio.ensure_future(_in_thread(conn, lambda raw: gate.wait(5)))


@pytest.mark.parametrize("to_the_end", [True, False])
def test_a_unit_is_queued_before_its_caller_first_suspends(
    tmp_path: Path, to_the_end: bool
) -> None:
    """A caller cancelled at its first suspension has its unit queued already: the unit
    runs (nothing can slip in between a check and the hand-over), and the cancellation
    propagates only once the unit has run and its outcome is back (with or without
    ``to_the_end``: see the delivery test below)."""
    ran: list[str] = []

    async def scenario() -> None:
        conn = await _open(tmp_path / "x.db")
        try:
            gate, blocker = _blocked_thread(conn)
            task = asyncio.ensure_future(
                _in_thread(conn, lambda raw: ran.append("unit"), to_the_end=to_the_end)
            )
            await asyncio.sleep(0)  # the task runs up to its first suspension
            task.cancel()
            for _ in range(3):  # a few loop iterations: the cancellation arrives
                await asyncio.sleep(0)
            assert not task.done()  # it waits for its unit
            assert ran == []  # the thread is still blocked
            gate.set()
            done, _ = await asyncio.wait([task], timeout=5)
            assert done, "the cancelled caller never ended: its unit was never queued"
            assert task.cancelled()
            assert await _in_thread(conn, lambda raw: list(ran)) == ["unit"]
            await blocker
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_units_and_plain_calls_run_in_the_order_they_are_made(tmp_path: Path) -> None:
    order: list[str] = []

    def mark(name: str) -> Callable[[sqlite3.Connection], None]:
        return lambda raw: order.append(name)

    async def scenario() -> None:
        conn = await _open(tmp_path / "x.db")
        try:
            gate, blocker = _blocked_thread(conn)
            await conn.create_function("mark", 1, order.append)
            calls = [
                asyncio.ensure_future(_in_thread(conn, mark("a"))),
                asyncio.ensure_future(conn.execute_fetchall("SELECT mark('b')")),
                asyncio.ensure_future(_in_thread(conn, mark("c"))),
            ]
            await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(blocker, *calls)
        finally:
            await conn.close()

    asyncio.run(scenario())
    assert order == ["a", "b", "c"]


def test_a_unit_in_flight_when_asyncio_run_ends_leaves_the_thread_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``asyncio.run`` cancels the caller while its unit runs: the caller waits for the
    unit, the result's delivery finds the loop still open, and the thread lives on."""
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: thread_errors.append(a.exc_value))
    started, gate, ran = threading.Event(), threading.Event(), threading.Event()
    conns: list[aiosqlite.Connection] = []
    left: list[asyncio.Future[int]] = []

    def blocked(raw: sqlite3.Connection) -> int:
        started.set()
        gate.wait(5)
        ran.set()
        return _one(raw)

    async def scenario() -> None:
        conn = await _open(tmp_path / "x.db")
        conns.append(conn)
        left.append(asyncio.ensure_future(_in_thread(conn, blocked, to_the_end=True)))
        assert await asyncio.to_thread(started.wait, 5)
        asyncio.get_running_loop().call_soon(gate.set)  # while asyncio.run cancels it

    asyncio.run(scenario())  # returns with the task above still running
    assert ran.is_set()
    assert left[0].cancelled()  # asyncio.run cancelled it, and it waited for its unit

    async def after() -> None:  # the connection's thread serves a new loop
        assert await asyncio.wait_for(_in_thread(conns[0], _one), 5) == 1
        await asyncio.wait_for(conns[0].close(), 5)

    asyncio.run(after())
    assert thread_errors == []


@pytest.mark.parametrize("to_the_end", [True, False])
def test_a_cancelled_unit_is_delivered_before_its_loop_may_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, to_the_end: bool
) -> None:
    """aiosqlite hands a unit's outcome to the loop from its thread *after* the unit
    returned (here made slow: the cursor it builds after every call takes 0.3 s). A
    caller cancelled while its unit runs returns only after that delivery (a writer's
    ``to_the_end`` call and a reader's alike), so ``asyncio.run`` closing the loop next
    does not end the thread."""
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: thread_errors.append(a.exc_value))
    started, gate = threading.Event(), threading.Event()
    slow = threading.Event()
    plain_cursor = _Connection.cursor

    def slow_cursor(self: _Connection, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        if slow.is_set():
            gate.wait(0.3)  # never set: a fixed 0.3 s pause on the connection's thread
        return plain_cursor(self, *args, **kwargs)

    monkeypatch.setattr(_Connection, "cursor", slow_cursor)
    conns: list[aiosqlite.Connection] = []
    left: list[asyncio.Future[int]] = []

    def blocked(raw: sqlite3.Connection) -> int:
        slow.set()
        started.set()
        return _one(raw)

    async def scenario() -> None:
        conn = await _open(tmp_path / "x.db")
        conns.append(conn)
        left.append(asyncio.ensure_future(_in_thread(conn, blocked, to_the_end=to_the_end)))
        assert await asyncio.to_thread(started.wait, 5)

    asyncio.run(scenario())  # cancels the caller while its unit's delivery is pending
    slow.clear()
    assert left[0].cancelled()

    async def after() -> None:
        assert await asyncio.wait_for(_in_thread(conns[0], _one), 10) == 1
        await asyncio.wait_for(conns[0].close(), 10)

    asyncio.run(after())
    assert thread_errors == []


def test_the_driver_opens_every_connection_with_the_factory(tmp_path: Path) -> None:
    async def check() -> None:
        driver = SqliteDriver(tmp_path / "x.db", readers=1)
        try:
            assert await driver.on_writer(lambda raw: type(raw)) is _Connection
            async with driver._reader() as reader:
                assert await _in_thread(reader, lambda raw: type(raw)) is _Connection
        finally:
            await driver._close_connections()

    asyncio.run(check())


def test_fast_pointer_rows_equal_the_checked_ones() -> None:
    """The provider's fast pointer encoding gives exactly the checked one's values, and
    falls back to it (and its messages) for anything it does not handle."""
    from datetime import UTC, datetime, timedelta, timezone
    from decimal import Decimal

    import pytest
    from wfe_core.models import ExecutionPointer, PointerStatus

    from wfe_sqlite import SqlitePersistenceProvider

    store = SqlitePersistenceProvider(":memory:")
    now = datetime(2026, 11, 22, 5, 6, 7, 891011, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    pointers = [
        ExecutionPointer(),
        ExecutionPointer(
            step_id=3,
            step_name="s",
            active=False,
            status=PointerStatus.COMPLETE,
            sleep_until=now,
            start_time=now,
            end_time=now.astimezone(plus_two),  # aware, not UTC: the checked path
            persistence_data={"n": Decimal("1.50"), "when": now},
            event_name="e",
            event_key="k",
            event_published=True,
            event_data=["x", 1, None],
            retry_count=2,
            children=["a", "b"],
            context_item="item",
            predecessor_id="p",
            outcome=7,
            scope=["p"],
            extension_attributes={"owner": {"team": "t"}},
        ),
        ExecutionPointer(persistence_data={}, event_data=[], outcome="", context_item=0),
    ]
    for p in pointers:
        assert store._pointer_values("wf", p) == store._pointer_values_checked("wf", p)
    naive = ExecutionPointer(start_time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match=r"start_time must be a timezone-aware"):
        store._pointer_values("wf", naive)
    odd = ExecutionPointer(persistence_data=object())
    with pytest.raises(Exception, match="persistence_data"):
        store._pointer_values("wf", odd)
