"""The work-queue contract and the in-process queue provider.

Queues carry hints, never the truth: an id on a queue says "look at this soon". The
store plus the host's poller make sure nothing is lost when a hint is. An id already
waiting in a queue is not queued twice; queues of different :class:`QueueType` are
independent; each queued id is handed to exactly one consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol, runtime_checkable

from wfe_core.models import QueueType

__all__ = ["InProcessQueueProvider", "QueueProvider", "QueueType"]


@runtime_checkable
class QueueProvider(Protocol):
    """FIFO queues of ids, one per :class:`QueueType`."""

    async def queue_work(self, id: str, queue: QueueType) -> None:
        """Append ``id`` to ``queue`` unless it is already waiting there."""
        ...

    async def dequeue_work(self, queue: QueueType, timeout: float) -> str | None:
        """Take the oldest id from ``queue``; wait up to ``timeout`` seconds for one when
        the queue is empty (when ``is_dequeue_blocking``), and return None if none came."""
        ...

    @property
    def is_dequeue_blocking(self) -> bool:
        """True when ``dequeue_work`` waits for work up to its timeout."""
        ...

    async def start(self) -> None:
        """Prepare for use; idempotent."""
        ...

    async def stop(self) -> None:
        """Release resources; idempotent."""
        ...


# --------------------------------------------------------------------------------------
# In-process implementation
# --------------------------------------------------------------------------------------


class _Queue:
    """One FIFO of ids, the set of ids waiting in it, and the consumers waiting on it."""

    __slots__ = ("ids", "waiters", "waiting")

    def __init__(self) -> None:
        self.ids: deque[str] = deque()
        self.waiting: set[str] = set()
        self.waiters: deque[asyncio.Future[None]] = deque()

    def pop(self) -> str | None:
        if not self.ids:
            return None
        item = self.ids.popleft()
        self.waiting.discard(item)
        return item

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class InProcessQueueProvider:
    """The in-process :class:`QueueProvider`: one FIFO per :class:`QueueType`.

    ``dequeue_work`` blocks up to its timeout (``timeout <= 0`` means "do not wait").
    Every id goes to exactly one consumer, however many wait concurrently. While the
    provider is stopped, ``dequeue_work`` never waits; :meth:`stop` wakes every blocked
    consumer, which then returns None. :meth:`start` after :meth:`stop` re-enables
    waiting. Only for hosts in one process: use a store's queue provider across
    processes.
    """

    def __init__(self) -> None:
        self._queues: dict[QueueType, _Queue] = {q: _Queue() for q in QueueType}
        self._stopped = False

    @property
    def is_dequeue_blocking(self) -> bool:
        """True: ``dequeue_work`` waits for work up to its timeout."""
        return True

    def _queue(self, queue: QueueType) -> _Queue:
        try:
            return self._queues[queue]
        except KeyError:
            raise ValueError(f"unknown queue {queue!r}; expected a QueueType") from None

    async def queue_work(self, id: str, queue: QueueType) -> None:
        """Append ``id`` to ``queue`` unless it is already waiting there."""
        q = self._queue(queue)
        if id in q.waiting:
            return
        q.waiting.add(id)
        q.ids.append(id)
        q.wake_one()

    async def dequeue_work(self, queue: QueueType, timeout: float) -> str | None:
        """Take the oldest id from ``queue``, waiting up to ``timeout`` seconds for one."""
        q = self._queue(queue)
        item = q.pop()
        if item is not None or timeout <= 0 or self._stopped:
            return item
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            q.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                pass
            except BaseException:
                # Cancelled: if we were woken for an id, pass the wake-up on.
                if waiter.done() and not waiter.cancelled() and q.ids:
                    q.wake_one()
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter.cancelled():  # timed out or cancelled: never woken, so forget it
                    with contextlib.suppress(ValueError):
                        q.waiters.remove(waiter)
            item = q.pop()
            if item is not None:
                if q.ids:  # more work than woken consumers may remain
                    q.wake_one()
                return item
            if self._stopped or loop.time() >= deadline:
                return None

    def qsize(self, queue: QueueType) -> int:
        """How many ids are waiting in ``queue``."""
        return len(self._queue(queue).ids)

    async def start(self) -> None:
        """Allow ``dequeue_work`` to wait again; idempotent."""
        self._stopped = False

    async def stop(self) -> None:
        """Wake every blocked consumer (they return None); idempotent."""
        self._stopped = True
        for q in self._queues.values():
            q.wake_all()
