"""The engine's clock: every "now" of the engine (``wfe_core.models.utcnow``) reads it.

Production code never touches this module: the clock is the system clock. A test kit
swaps in a virtual clock (:func:`use_clock`) so that delays, timeouts and schedules
of days run in milliseconds; anything in the engine that waits for a point in time
computes it from :func:`now`, and waits of its own use :func:`sleep`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "current", "now", "sleep", "use_clock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time for the engine."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of this clock's time have passed."""
        ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)`` and ``asyncio.sleep``."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""
        await asyncio.sleep(seconds)


_clock: Clock = SystemClock()


def now() -> datetime:
    """The engine's current time (timezone-aware UTC)."""
    return _clock.now()


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` of the engine's time."""
    await _clock.sleep(seconds)


def current() -> Clock:
    """The clock in use."""
    return _clock


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Use ``clock`` as the engine's clock inside the ``with`` block (process-wide:
    meant for tests), then restore the previous one."""
    global _clock
    if not isinstance(clock, Clock):
        raise TypeError(f"use_clock takes a Clock (now() and sleep()), not {clock!r}")
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous
