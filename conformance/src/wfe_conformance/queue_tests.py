"""Conformance suite for work-queue providers.

Pins down: FIFO per queue type, independent queue types, an id waiting in a queue is
not queued twice (but may be queued again once taken), ``dequeue_work`` honours its
timeout and (when blocking) wakes as soon as work arrives, and each queued id goes to
exactly one of several concurrent consumers.
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import anyio.lowlevel
from wfe_core.models import QueueType, new_id
from wfe_core.queues import QueueProvider

from wfe_conformance.base import SuiteBase

__all__ = ["QueueProviderTests"]

_EMPTY_WAIT = 0.1  # the timeout used when a dequeue is expected to find nothing
_MARGIN = 1.0  # slack allowed on top of a timeout
_BOUND = 10.0  # bound on a whole multi-consumer exchange


def _ids(n: int) -> list[str]:
    prefix = new_id()
    return [f"{prefix}-{i:03d}" for i in range(n)]


async def _take(queue: QueueProvider, queue_type: QueueType, within: float = 3.0) -> str:
    """Dequeue one id, polling for non-blocking providers, failing after ``within``."""
    with anyio.fail_after(within):
        while True:
            item = await queue.dequeue_work(queue_type, 0.5)
            if item is not None:
                return item
            await anyio.sleep(0.01)


class QueueProviderTests(SuiteBase):
    """``QueueProvider`` semantics."""

    async def test_items_come_out_in_fifo_order(self, queue_provider: QueueProvider) -> None:
        """Ids come out of a queue in the order they were queued."""
        ids = _ids(5)
        for i in ids:
            await queue_provider.queue_work(i, QueueType.WORKFLOW)
        assert [await _take(queue_provider, QueueType.WORKFLOW) for _ in ids] == ids

    async def test_many_items_drain_in_order_then_empty(
        self, queue_provider: QueueProvider
    ) -> None:
        """Forty queued ids drain in order, after which the queue is empty."""
        ids = _ids(40)
        for i in ids:
            await queue_provider.queue_work(i, QueueType.EVENT)
        assert [await _take(queue_provider, QueueType.EVENT) for _ in ids] == ids
        assert await queue_provider.dequeue_work(QueueType.EVENT, _EMPTY_WAIT) is None

    async def test_empty_dequeue_returns_none_within_the_timeout(
        self, queue_provider: QueueProvider
    ) -> None:
        """dequeue_work on an empty queue returns None no later than its timeout (+ slack)."""
        for queue_type in QueueType:
            start = time.monotonic()
            with anyio.fail_after(_EMPTY_WAIT + _MARGIN + 1.0):
                assert await queue_provider.dequeue_work(queue_type, _EMPTY_WAIT) is None
            assert time.monotonic() - start < _EMPTY_WAIT + _MARGIN

    async def test_blocked_dequeue_wakes_when_work_arrives(
        self, queue_provider: QueueProvider
    ) -> None:
        """A dequeue waiting with a long timeout returns soon after an id is queued."""
        (item,) = _ids(1)
        got: list[str | None] = []

        async def consumer() -> None:
            with anyio.fail_after(1.5):
                while True:
                    result = await queue_provider.dequeue_work(QueueType.WORKFLOW, 5.0)
                    if result is not None:
                        got.append(result)
                        return
                    await anyio.sleep(0.01)

        with anyio.fail_after(_BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                await anyio.sleep(0.05)  # let the consumer start waiting
                await queue_provider.queue_work(item, QueueType.WORKFLOW)
        assert got == [item]

    async def test_id_waiting_in_queue_is_not_queued_twice(
        self, queue_provider: QueueProvider
    ) -> None:
        """The same id queued three times while waiting comes out once."""
        (item,) = _ids(1)
        for _ in range(3):
            await queue_provider.queue_work(item, QueueType.WORKFLOW)
        assert await _take(queue_provider, QueueType.WORKFLOW) == item
        assert await queue_provider.dequeue_work(QueueType.WORKFLOW, _EMPTY_WAIT) is None

    async def test_duplicate_does_not_change_position(self, queue_provider: QueueProvider) -> None:
        """Queuing an id already waiting neither duplicates nor reorders it."""
        a, b, c = _ids(3)
        for i in (a, b, a, c, b):
            await queue_provider.queue_work(i, QueueType.INDEX)
        assert [await _take(queue_provider, QueueType.INDEX) for _ in range(3)] == [a, b, c]
        assert await queue_provider.dequeue_work(QueueType.INDEX, _EMPTY_WAIT) is None

    async def test_taken_id_can_be_queued_again(self, queue_provider: QueueProvider) -> None:
        """Once dequeued, the same id can be queued and dequeued again."""
        (item,) = _ids(1)
        await queue_provider.queue_work(item, QueueType.EVENT)
        assert await _take(queue_provider, QueueType.EVENT) == item
        await queue_provider.queue_work(item, QueueType.EVENT)
        assert await _take(queue_provider, QueueType.EVENT) == item
        assert await queue_provider.dequeue_work(QueueType.EVENT, _EMPTY_WAIT) is None

    async def test_queue_types_are_independent(self, queue_provider: QueueProvider) -> None:
        """Each queue type only yields its own ids, and one id may wait in several."""
        shared, wf, ev, ix = _ids(4)
        await queue_provider.queue_work(wf, QueueType.WORKFLOW)
        await queue_provider.queue_work(ev, QueueType.EVENT)
        await queue_provider.queue_work(ix, QueueType.INDEX)
        for queue_type in QueueType:
            await queue_provider.queue_work(shared, queue_type)
        assert await _take(queue_provider, QueueType.EVENT) == ev
        assert await _take(queue_provider, QueueType.EVENT) == shared
        assert await queue_provider.dequeue_work(QueueType.EVENT, _EMPTY_WAIT) is None
        assert await _take(queue_provider, QueueType.INDEX) == ix
        assert await _take(queue_provider, QueueType.INDEX) == shared
        assert await _take(queue_provider, QueueType.WORKFLOW) == wf
        assert await _take(queue_provider, QueueType.WORKFLOW) == shared
        for queue_type in QueueType:
            assert await queue_provider.dequeue_work(queue_type, _EMPTY_WAIT) is None

    async def test_concurrent_consumers_get_each_item_once(
        self, queue_provider: QueueProvider
    ) -> None:
        """Five concurrent consumers draining 100 ids receive each exactly once."""
        ids = _ids(100)
        for i in ids:
            await queue_provider.queue_work(i, QueueType.WORKFLOW)
        received: Counter[str] = Counter()

        async def consumer() -> None:
            while True:
                item = await queue_provider.dequeue_work(QueueType.WORKFLOW, _EMPTY_WAIT)
                if item is None:
                    return
                received[item] += 1
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(_BOUND):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(consumer)
        assert set(received) == set(ids)
        assert {i: n for i, n in received.items() if n != 1} == {}

    async def test_concurrent_producers_and_consumers(self, queue_provider: QueueProvider) -> None:
        """Ids queued by five concurrent producers reach five consumers exactly once."""
        batches = [_ids(20) for _ in range(5)]
        expected = {i for batch in batches for i in batch}
        received: Counter[str] = Counter()

        async def producer(batch: list[str]) -> None:
            for i in batch:
                await queue_provider.queue_work(i, QueueType.EVENT)
                await anyio.lowlevel.checkpoint()

        async def consumer() -> None:
            while sum(received.values()) < len(expected):
                item = await queue_provider.dequeue_work(QueueType.EVENT, 0.05)
                if item is not None:
                    received[item] += 1
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(_BOUND):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(consumer)
                async with anyio.create_task_group() as producers:
                    for batch in batches:
                        producers.start_soon(producer, batch)
        assert set(received) == expected
        assert {i: n for i, n in received.items() if n != 1} == {}

    async def test_is_dequeue_blocking_is_a_stable_bool(
        self, queue_provider: QueueProvider
    ) -> None:
        """is_dequeue_blocking is a bool and reads the same every time."""
        first = queue_provider.is_dequeue_blocking
        assert isinstance(first, bool)
        assert all(queue_provider.is_dequeue_blocking is first for _ in range(3))

    async def test_queue_start_and_stop_are_idempotent(self, queue_provider: QueueProvider) -> None:
        """start twice and stop twice succeed; the queue works between them."""
        await queue_provider.start()
        await queue_provider.start()
        (item,) = _ids(1)
        await queue_provider.queue_work(item, QueueType.WORKFLOW)
        assert await _take(queue_provider, QueueType.WORKFLOW) == item
        await queue_provider.stop()
        await queue_provider.stop()
