"""The :class:`VirtualClock`: engine time that tests move forward at will."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["VirtualClock"]


class VirtualClock:
    """A :class:`wfe_core.clock.Clock` whose time jumps forward when told to.

    The virtual time starts at ``start`` (timezone-aware; the real now by default).
    With ``ticking=True`` (the default) it also runs along with real time between
    jumps, so "before" and "after" keep their meaning inside a test exactly as in
    production (an event published before a workflow subscribes is still "before");
    with ``ticking=False`` it stands still unless moved (fully deterministic).

    :meth:`advance` and :meth:`advance_to` move it forward and wake every
    :meth:`sleep` that is due. Install it as the engine's clock with
    ``wfe_core.clock.use_clock(clock)`` (the :class:`~wfe_core.testing.WorkflowTestEnv`
    does that for you).
    """

    def __init__(self, start: datetime | None = None, *, ticking: bool = True) -> None:
        if start is None:
            start = datetime.now(UTC)
        elif not isinstance(start, datetime):
            raise TypeError(
                f"VirtualClock start must be a datetime, not {type(start).__name__}; "
                "give e.g. datetime(2026, 1, 1, tzinfo=UTC)"
            )
        elif start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(
                f"VirtualClock start must be timezone-aware, not {start!r}; "
                "give e.g. datetime(2026, 1, 1, tzinfo=UTC)"
            )
        self._start = start.astimezone(UTC)
        self._ticking = bool(ticking)
        self._real_start = time.monotonic()
        self._skipped = timedelta(0)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._changes = 0

    def __repr__(self) -> str:
        return f"<VirtualClock {self.now().isoformat()} skipped={self._skipped}>"

    # ------------------------------------------------------------------ reading
    @property
    def ticking(self) -> bool:
        """True when the virtual time also runs along with real time."""
        return self._ticking

    @property
    def skipped(self) -> timedelta:
        """How far the clock was moved forward in total (by :meth:`advance`)."""
        return self._skipped

    @property
    def changes(self) -> int:
        """A counter that grows whenever a sleeper starts, wakes or leaves (the test
        environment uses it to tell "everything waits for time" from "busy")."""
        return self._changes

    def now(self) -> datetime:
        """The virtual time, timezone-aware UTC."""
        now = self._start + self._skipped
        if self._ticking:
            now += timedelta(seconds=time.monotonic() - self._real_start)
        return now

    @property
    def sleepers(self) -> int:
        """How many :meth:`sleep` calls are waiting now."""
        with self._lock:
            return sum(1 for _, _, f in self._sleepers if not f.done())

    @property
    def next_wake(self) -> datetime | None:
        """The earliest virtual time a waiting :meth:`sleep` is due, or None."""
        with self._lock:
            self._drop_done()
            return self._sleepers[0][0] if self._sleepers else None

    # ------------------------------------------------------------------ moving
    def advance(self, delta: timedelta | float) -> datetime:
        """Move the time forward by ``delta`` (a timedelta, or seconds) and wake the
        sleepers now due; return the new time."""
        if isinstance(delta, bool) or not isinstance(delta, timedelta | int | float):
            raise TypeError(f"advance takes a timedelta or seconds, not {type(delta).__name__}")
        if not isinstance(delta, timedelta):
            if not math.isfinite(delta):
                raise ValueError(f"advance takes a finite number of seconds, not {delta!r}")
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError(
                f"a virtual clock only moves forward; advance({delta!r}) would go back"
            )
        self._skipped += delta
        self._wake_due()
        return self.now()

    def advance_to(self, when: datetime) -> datetime:
        """Move the time forward to ``when`` (aware); a time already passed changes
        nothing. Return the new time."""
        if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"advance_to takes a timezone-aware datetime, not {when!r}")
        delta = when - self.now()
        return self.advance(delta) if delta > timedelta(0) else self.now()

    # ------------------------------------------------------------------ sleeping
    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of virtual time have passed (by :meth:`advance`, or
        by real time when ticking)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"sleep takes seconds (a number), not {type(seconds).__name__}")
        if math.isnan(seconds):
            raise ValueError("sleep takes a number of seconds, not NaN")
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if math.isinf(seconds):
            deadline = datetime.max.replace(tzinfo=UTC)
        else:
            deadline = self.now() + timedelta(seconds=seconds)
        loop = asyncio.get_running_loop()
        while True:
            left = (deadline - self.now()).total_seconds()
            if left <= 0:
                return
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
                self._changes += 1
            try:
                # a ticking clock also reaches the deadline by itself, in real time
                timeout = left if self._ticking and not math.isinf(seconds) else None
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                pass
            finally:
                if not future.done():
                    future.cancel()
                with self._lock:
                    self._changes += 1

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        now = self.now()
        with self._lock:
            due: list[asyncio.Future[None]] = []
            while self._sleepers and (self._sleepers[0][0] <= now or self._sleepers[0][2].done()):
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    due.append(future)
            self._changes += 1
        for future in due:
            _wake(future)


def _wake(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` on its own loop (from that loop, or from another thread)."""
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if not future.done():
            future.set_result(None)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
