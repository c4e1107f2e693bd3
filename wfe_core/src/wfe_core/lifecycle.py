"""The lifecycle-publishing contract and the in-process publisher.

Lifecycle events (workflow started, completed, ...; step started, completed) are
best-effort notifications, not part of the store's transaction. A handler that raises
is logged and does not stop delivery to the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from wfe_core.models import LifecycleEvent, LifecycleEventType

__all__ = ["LifecycleEvent", "LifecycleEventType", "LifecycleHandler", "LifecyclePublisher"]

LifecycleHandler = Callable[[LifecycleEvent], Awaitable[None] | None]
"""A sync or async callable that receives lifecycle events."""


@runtime_checkable
class LifecyclePublisher(Protocol):
    """Fans lifecycle events out to subscribers (in process or across processes)."""

    async def publish(self, event: LifecycleEvent) -> None:
        """Send ``event`` to every subscriber."""
        ...

    def subscribe(self, handler: LifecycleHandler) -> Callable[[], None]:
        """Register ``handler``; return a function that unregisters it."""
        ...

    async def start(self) -> None:
        """Prepare for use; idempotent."""
        ...

    async def stop(self) -> None:
        """Deliver what is pending and release resources; idempotent."""
        ...
