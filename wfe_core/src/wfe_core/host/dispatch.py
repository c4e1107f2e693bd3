"""Work dispatch: the consumers that take queued work, the slots that bound how much
runs at once, local hand-offs (work this host gives itself, no queue round trip) and
in-process wake-up timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from wfe_core.errors import ProviderUnavailable
from wfe_core.logs import queued_ids
from wfe_core.models import QueueType, utcnow
from wfe_core.options import HostOptions
from wfe_core.queues import QueueProvider
from wfe_core.retry import backoff_delay

__all__ = ["Handler", "WorkDispatcher", "log_outage"]

log = logging.getLogger("wfe.host")

Handler = Callable[[str], Awaitable[None]]
"""Processes one queued item (a workflow or an event id)."""


def log_outage(what: str, exc: Exception, failures: int, delay: float) -> None:
    """One line per failure while a service is down (a traceback only for surprises)."""
    if isinstance(exc, ProviderUnavailable):
        if failures == 1 or failures % 10 == 0:
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
    else:
        log.exception("%s failed; retrying in %.1fs", what, delay)


class WorkDispatcher:
    """Runs handlers for queued work within the host's concurrency limits."""

    def __init__(
        self,
        queue_provider: QueueProvider,
        options: HostOptions,
        hint: Callable[[str, QueueType], Coroutine[Any, Any, None]],
    ) -> None:
        self.queue_provider = queue_provider
        self.options = options
        self._hint = hint
        self.running = False
        """True between ``start`` and ``stop``."""
        self.stopping = asyncio.Event()
        self.items: set[asyncio.Task[None]] = set()
        """Tasks processing one item each."""
        self._timers: dict[tuple[QueueType, str], asyncio.TimerHandle] = {}
        self._slots: dict[QueueType, asyncio.Semaphore] = {}

    def start(self) -> None:
        """Allow work: fresh slots and stop signal."""
        self.stopping = asyncio.Event()
        self._slots = {
            QueueType.WORKFLOW: asyncio.Semaphore(self.options.max_concurrent_workflows),
            QueueType.EVENT: asyncio.Semaphore(self.options.max_concurrent_events),
        }
        self.running = True

    def halt(self) -> None:
        """Take no more work: wake sleepers, cancel the wake-up timers."""
        self.running = False
        self.stopping.set()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` until it is done (``stop`` waits for these)."""
        self.items.add(task)
        task.add_done_callback(self.items.discard)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the host stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def consume(self, queue: QueueType, handler: Handler) -> None:
        """Take items from ``queue`` and run ``handler`` on each, one slot each."""
        slots = self._slots[queue]
        blocking = self.queue_provider.is_dequeue_blocking
        failures = 0
        while self.running:
            await slots.acquire()
            try:
                item = await self.queue_provider.dequeue_work(
                    queue, max(self.options.idle_time, 0.5) if blocking else 0
                )
            except asyncio.CancelledError:
                slots.release()
                raise
            except Exception as exc:
                slots.release()
                failures += 1
                delay = backoff_delay(failures, 0.2, 2.0, 5.0, jitter=0.2)
                log_outage(f"taking work from the {queue.value} queue", exc, failures, delay)
                await self.sleep(delay)
                continue
            if failures:
                log.info("the %s queue answers again", queue.value)
                failures = 0
            if item is None:
                slots.release()
                if not blocking:
                    await self.sleep(self.options.idle_time)
                continue
            self.track(asyncio.create_task(self._guarded(handler, item, queue)))

    async def _guarded(
        self, handler: Handler, item: str, queue: QueueType, *, queued: bool = True
    ) -> None:
        """Run ``handler(item)`` holding one of ``queue``'s slots; errors are logged (the
        work stays in the store and is retried). ``queued``: the item came from the
        queue (acknowledged afterwards), not from a local hand-off."""
        slots = self._slots[queue]
        try:
            await handler(item)
        except asyncio.CancelledError:
            slots.release()
            raise
        except ProviderUnavailable as exc:
            log.warning(
                "processing %s %s stopped: %s (it will be retried)",
                queue.value,
                item,
                exc,
                extra=queued_ids(queue, item),
            )
        except Exception:
            log.exception(
                "processing %s %s failed; it will be retried",
                queue.value,
                item,
                extra=queued_ids(queue, item),
            )
        slots.release()
        ack = getattr(self.queue_provider, "ack", None) if queued else None
        if ack is not None:  # queues that redeliver unacknowledged items
            try:
                await ack(item, queue)
            except Exception as exc:
                log.warning(
                    "could not acknowledge %s %s: %s",
                    queue.value,
                    item,
                    exc,
                    extra=queued_ids(queue, item),
                )

    async def local_slot(self, queue: QueueType = QueueType.WORKFLOW) -> bool:
        """Take a free slot of ``queue`` for work this host hands to itself; False (and
        nothing taken) when the host is not running or every slot is busy."""
        slots = self._slots.get(queue)
        if not self.running or slots is None or slots.locked():
            return False
        await slots.acquire()  # free: returns at once
        return True

    def release_slot(self, queue: QueueType = QueueType.WORKFLOW) -> None:
        """Give back a slot taken by :meth:`local_slot`."""
        slots = self._slots.get(queue)
        if slots is not None:
            slots.release()

    def spawn(self, queue: QueueType, item: str, handler: Handler) -> None:
        """Run ``handler(item)`` here, in a task holding the slot of ``queue`` taken by
        :meth:`local_slot` (no queue round trip)."""
        self.track(asyncio.create_task(self._guarded(handler, item, queue, queued=False)))

    def wake_at(self, queue: QueueType, item: str, when: datetime) -> None:
        """Queue ``item`` at ``when`` from this process (the poller is the fallback)."""
        if not self.running:
            return
        delay = (when - utcnow()).total_seconds()
        if delay > self.options.poll_interval * 2:
            return
        key = (queue, item)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            if self.running:
                self.track(loop.create_task(self._hint(item, queue)))

        self._timers[key] = loop.call_later(max(delay, 0.0), fire)
