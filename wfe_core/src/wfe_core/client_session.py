"""Using a host as a client (kept for existing callers; new code uses
:class:`~wfe_core.client.WorkflowClient`, ``async with client:``).

:func:`client_session` makes the store ready and runs the lock, queue and lifecycle
providers (so what it queues reaches the workers), but no consumer or poller, so
nothing executes in this process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from wfe_core.client import WorkflowClient

__all__ = ["client_session"]

_C = TypeVar("_C", bound=WorkflowClient)


@asynccontextmanager
async def client_session(host: _C) -> AsyncIterator[_C]:
    """Use a client (or a host, without starting it): the store is made ready and the lock,
    queue and lifecycle providers run, but no consumer or poller does, so nothing
    executes in this process. Everything is stopped and closed on exit."""
    try:
        await host.open()  # the store made ready, the services started (none on failure)
        yield host
    finally:
        with contextlib.suppress(Exception):
            await host.close()  # the services, and the store when the client opened it
        if not host._owns_persistence:
            with contextlib.suppress(Exception):
                await host.persistence.close()  # "everything is closed on exit"
