"""The hand-over of work to an aiosqlite connection's thread (``wfe_sqlite.driver``).

wfe-sqlite queues whole units of work on aiosqlite's own queue for the connection's
thread (private attributes, hence the pinned aiosqlite range). The work resolves its own
future and must survive a caller that is gone: its task cancelled, or its event loop
closed -- aiosqlite's own delivery would raise in the thread and kill the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import aiosqlite
from wfe_sqlite.driver import _hand_over, _in_thread


def _one(raw: sqlite3.Connection) -> int:
    return int(raw.execute("SELECT 1").fetchone()[0])


def test_aiosqlite_still_has_the_private_parts_we_use(tmp_path: Path) -> None:
    async def check() -> None:
        conn = await aiosqlite.connect(tmp_path / "x.db")
        try:
            assert conn._running is True
            assert isinstance(conn._connection, sqlite3.Connection)
            assert hasattr(conn._tx, "put_nowait")
            assert await _in_thread(conn, _one) == 1
        finally:
            await conn.close()

    asyncio.run(check())


def test_work_outliving_its_event_loop_leaves_the_thread_working(tmp_path: Path) -> None:
    gate = threading.Event()
    ran = threading.Event()

    def blocked(raw: sqlite3.Connection) -> int:
        gate.wait(5)
        ran.set()
        return _one(raw)

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(aiosqlite.connect(tmp_path / "x.db"))
    future = None

    async def start() -> None:
        nonlocal future
        future = _hand_over(conn, blocked)

    loop.run_until_complete(start())
    loop.close()  # the caller's loop is gone while its work still waits to run
    gate.set()
    assert ran.wait(5), "the queued work never ran"
    assert future is not None
    assert not future.done()  # nobody could be told, and nothing raised in the thread

    async def after() -> None:  # the connection's thread is alive and serves a new loop
        assert await asyncio.wait_for(_in_thread(conn, _one), 5) == 1
        await asyncio.wait_for(conn.close(), 5)

    asyncio.run(after())


def test_a_cancelled_caller_does_not_break_the_connection(tmp_path: Path) -> None:
    gate = threading.Event()

    def blocked(raw: sqlite3.Connection) -> int:
        gate.wait(5)
        return _one(raw)

    async def scenario() -> None:
        conn = await aiosqlite.connect(tmp_path / "x.db")
        try:
            task = asyncio.ensure_future(_in_thread(conn, blocked))
            await asyncio.sleep(0)
            task.cancel()
            gate.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert task.cancelled()
            assert await _in_thread(conn, _one) == 1  # later work still gets its result
        finally:
            await conn.close()

    asyncio.run(scenario())


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
