"""The lifecycle-publishing contract and the in-process publisher.

Lifecycle events (workflow started, completed, ...; step started, completed) are
best-effort notifications, not part of the store's transaction. A handler that raises
is logged and does not stop delivery to the others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from wfe_core.models import LifecycleEvent, LifecycleEventType

__all__ = [
    "InProcessLifecyclePublisher",
    "LifecycleEvent",
    "LifecycleEventType",
    "LifecycleHandler",
    "LifecyclePublisher",
]

_log = logging.getLogger("wfe.lifecycle")

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


# --------------------------------------------------------------------------------------
# In-process implementation
# --------------------------------------------------------------------------------------


class _Subscription:
    """One registration of a handler (the same handler may be registered twice)."""

    __slots__ = ("handler",)

    def __init__(self, handler: LifecycleHandler) -> None:
        self.handler = handler


class InProcessLifecyclePublisher:
    """The in-process :class:`LifecyclePublisher`: calls local subscribers directly.

    :meth:`publish` delivers inline, to each handler in the order they subscribed: a
    sync handler is called, an async handler is awaited before the next handler runs,
    so ``publish`` returns once every handler has seen the event. Keep handlers quick
    (hand slow work to a task of your own): the publisher waits for them. A handler
    that raises is logged on the ``wfe.lifecycle`` logger and the others still get the
    event. Subscribing or unsubscribing during a publish affects the next publish.
    """

    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []

    def subscribe(self, handler: LifecycleHandler) -> Callable[[], None]:
        """Register ``handler``; return a function that unregisters it (idempotent)."""
        if not callable(handler):
            raise TypeError(f"a lifecycle handler must be callable, not {handler!r}")
        subscription = _Subscription(handler)
        self._subscriptions = [*self._subscriptions, subscription]

        def unsubscribe() -> None:
            self._subscriptions = [s for s in self._subscriptions if s is not subscription]

        return unsubscribe

    async def publish(self, event: LifecycleEvent) -> None:
        """Deliver ``event`` to every handler in subscription order, awaiting async ones."""
        for subscription in self._subscriptions:  # a snapshot: the list is never mutated
            try:
                result = subscription.handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _log.exception(
                    "lifecycle handler %r failed on %s for workflow %s",
                    subscription.handler,
                    event.type,
                    event.workflow_id,
                    extra={
                        "workflow_id": event.workflow_id or None,
                        "definition": event.workflow_definition_id or None,
                        "step": event.step_name,
                        "pointer_id": event.execution_pointer_id,
                    },
                )

    async def start(self) -> None:
        """Nothing to prepare; idempotent."""

    async def stop(self) -> None:
        """Nothing is pending (delivery is inline); idempotent."""
