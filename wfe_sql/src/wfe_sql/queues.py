"""A :class:`~wfe_core.queues.QueueProvider` on the store's ``wfe_queue`` table.

Each queued id is a row; ``UNIQUE(queue, item)`` keeps an id that is already waiting from
being queued twice. Taking the oldest id is one atomic statement (``DELETE ... WHERE seq =
(oldest) RETURNING item``), so each id goes to exactly one consumer, in any process.

``dequeue_work`` blocks up to its timeout. A consumer is woken at once by ids queued
through any provider on the same store in the same process; ids queued by other
processes are found by polling, with a back-off from 1 ms up to ``poll_interval``
(default 20 ms), which bounds the extra latency they see. Polls are cheap reads; the
write happens only when there is something to take. A wake-up that arrives while a
consumer is looking at the table is not lost: the consumer notes the signal's
:attr:`WorkSignal.version` before it looks and does not wait if it moved.

A dialect with a notification channel (PostgreSQL ``LISTEN/NOTIFY``) overrides the
public hooks of :class:`SqlQueueProvider`: :meth:`~SqlQueueProvider.enqueue` (queue and
notify in one statement), :meth:`~SqlQueueProvider.wait_for_work` (wait for the
notification), :meth:`~SqlQueueProvider.poll_bounds` (poll rarely while notifications
flow) and :meth:`~SqlQueueProvider.has_work` (skip the look when taking is as cheap); it
pokes the in-process signal of a notified queue through :func:`local_signal`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING

from wfe_core.models import QueueType
from wfe_core.retry import Backoff

from wfe_sql.driver import DriverComponent, SqlDriver
from wfe_sql.statements import QueueStatements

if TYPE_CHECKING:
    from wfe_core.queues import QueueProvider

__all__ = ["SqlQueueProvider", "WorkSignal", "local_signal"]

_MIN_POLL = 0.001


class WorkSignal:
    """Wakes the consumers waiting in this process for one store and queue."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.version = 0
        """Counts :meth:`notify` calls (a waiter compares it to what it saw before)."""

    async def wait(self, timeout: float, seen: int | None = None) -> None:
        """Return after ``timeout`` seconds or as soon as :meth:`notify` is called; at
        once when :attr:`version` is no longer ``seen`` (a notify came meanwhile)."""
        if seen is not None and seen != self.version:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.add(future)
        timer = loop.call_later(max(timeout, 0.0), _set_done, future)
        try:
            await future
        finally:
            timer.cancel()
            self._waiters.discard(future)

    def notify(self) -> None:
        """Wake every waiter."""
        self.version += 1
        for future in list(self._waiters):
            if future.done():
                continue
            loop = future.get_loop()
            if loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                future.set_result(None)
            else:
                loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# One signal per store and queue while someone waits on it (weak: no waiter, no entry).
_signals: weakref.WeakValueDictionary[tuple[str, str], WorkSignal] = weakref.WeakValueDictionary()


def local_signal(store: str, queue: str) -> WorkSignal:
    """The in-process signal of ``queue`` in the store named ``store`` (a driver's
    :attr:`~wfe_sql.SqlDriver.name`): :meth:`WorkSignal.notify` wakes this process's
    consumers waiting on it."""
    key = (store, queue)
    found = _signals.get(key)
    if found is None:
        found = WorkSignal()
        _signals[key] = found
    return found


_signal = local_signal


def _queue_name(queue: QueueType) -> str:
    try:
        return QueueType(queue).value
    except ValueError:
        raise ValueError(f"unknown queue {queue!r}; expected a QueueType") from None


class SqlQueueProvider(DriverComponent[QueueStatements]):
    """FIFO queues of ids in the ``wfe_queue`` table (see the module docstring).

    ``poll_interval`` is the longest pause between two looks at an empty queue while a
    ``dequeue_work`` waits. While stopped, ``dequeue_work`` never waits, and :meth:`stop`
    wakes the consumers waiting in this provider (they return None).

    Dialect hooks: :meth:`enqueue`, :meth:`has_work`, :meth:`wait_for_work` and
    :meth:`poll_bounds` are what a dialect overrides (see the module docstring).
    :meth:`queue_work` and :meth:`dequeue_work` call them with the store open; callers
    use those two, not the hooks.
    """

    def __init__(self, driver: SqlDriver, *, poll_interval: float = 0.02) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
        self.poll_interval = poll_interval
        super().__init__(driver, driver.cached("wfe_sql.queues", QueueStatements))
        self._stopped = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.driver.name}>"

    @property
    def stopped(self) -> bool:
        """True between :meth:`stop` and the next :meth:`start`."""
        return self._stopped

    @property
    def is_dequeue_blocking(self) -> bool:
        """True: ``dequeue_work`` waits for work up to its timeout."""
        return True

    async def queue_work(self, id: str, queue: QueueType) -> None:
        """Append ``id`` to ``queue`` unless it is already waiting there."""
        name = _queue_name(queue)
        async with self._use():
            added = await self.enqueue(name, id)
        if added:
            _signal(self.driver.name, name).notify()

    async def enqueue(self, name: str, id: str) -> bool:
        """Insert ``id`` into queue ``name`` (a :class:`~wfe_core.models.QueueType` value)
        unless it waits there; return whether it was added (:meth:`queue_work` then wakes
        this process's consumers).

        A dialect overrides this to also notify other processes in the same statement
        (PostgreSQL: ``INSERT ... RETURNING`` feeding ``pg_notify``)."""
        s = self._stmts
        args = s.enqueue.args({"p_queue": name, "p_item": id})
        return bool(await self.driver.execute(s.enqueue.sql, args, durable=False))

    async def _take(self, name: str) -> str | None:
        s = self._stmts
        rows = await self.driver.execute_returning(
            s.dequeue.sql, s.dequeue.args({"p_queue": name}), durable=False
        )
        return rows[0][0] if rows else None

    async def has_work(self, name: str) -> bool:
        """Whether queue ``name`` may hold an id: :meth:`dequeue_work` looks before it
        takes (a cheap read) so an empty queue costs no write.

        A dialect overrides this to return True when taking from an empty queue is as
        cheap as looking (one round trip instead of two)."""
        s = self._stmts
        return await self.driver.fetchone(s.peek.sql, s.peek.args({"p_queue": name})) is not None

    async def wait_for_work(self, name: str, timeout: float, seen: int | None = None) -> None:
        """Wait up to ``timeout`` seconds, less when work may have arrived in queue
        ``name`` (or on stop); ``seen`` is the :attr:`WorkSignal.version` of the queue's
        :func:`local_signal` before the last look at the table: return at once when it
        moved since. By default this waits on that in-process signal only.

        A dialect overrides this to also be woken by other processes (PostgreSQL: make
        sure the ``LISTEN`` connection is up, whose notifications poke the signal)."""
        await _signal(self.driver.name, name).wait(timeout, seen)

    def poll_bounds(self) -> tuple[float, float]:
        """The first pause and the longest pause between two looks at an empty queue
        while :meth:`dequeue_work` waits (asked again after every pause; the pause
        doubles from the first up to the longest). Default: 1 ms up to ``poll_interval``.

        A dialect whose :meth:`wait_for_work` is woken by other processes overrides this
        to poll rarely while its notifications flow."""
        return _MIN_POLL, self.poll_interval

    async def dequeue_work(self, queue: QueueType, timeout: float) -> str | None:
        """Take the oldest id from ``queue``, waiting up to ``timeout`` seconds for one."""
        name = _queue_name(queue)
        signal = _signal(self.driver.name, name)  # held: it lives while we wait on it
        async with self._use():
            seen = signal.version
            if await self.has_work(name):
                item = await self._take(name)
                if item is not None:
                    return item
            if timeout <= 0 or self._stopped:
                return None
            deadline = time.monotonic() + timeout
            lo, hi = self.poll_bounds()
            wait = Backoff(lo, maximum=hi, jitter=0.2)
            delay = next(wait)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                await self.wait_for_work(name, min(delay, left), seen)
                if self.stopped:
                    return None
                delay = next(wait)
                seen = signal.version
                if await self.has_work(name):
                    item = await self._take(name)
                    if item is not None:
                        return item

    async def start(self) -> None:
        """Open the store (creating the schema if needed), keep it open until
        :meth:`stop`, and allow waiting; idempotent."""
        self._stopped = False
        await self._open()

    async def stop(self) -> None:
        """Wake this provider's waiting consumers (they return None) and let go of the
        connections; idempotent."""
        self._stopped = True
        for queue in QueueType:  # waiters of other providers just look again
            _signal(self.driver.name, queue.value).notify()
        await self._close()


if TYPE_CHECKING:

    def _conforms(p: SqlQueueProvider) -> QueueProvider:
        return p
