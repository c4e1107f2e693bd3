"""The work-queue contract and the in-process queue provider.

Queues carry hints, never the truth: an id on a queue says "look at this soon". The
store plus the host's poller make sure nothing is lost when a hint is. An id already
waiting in a queue is not queued twice; queues of different :class:`QueueType` are
independent; each queued id is handed to exactly one consumer.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from wfe_core.models import QueueType

__all__ = ["QueueProvider", "QueueType"]


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
