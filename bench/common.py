"""Shared helpers for bench cells: store URLs, percentiles, versions, the closed loop."""

from __future__ import annotations

import asyncio
import platform
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[idx]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50": pct(ms, 0.50),
        "p99": pct(ms, 0.99),
        "mean": statistics.fmean(ms) if ms else float("nan"),
    }


def new_tag() -> str:
    """A short random tag for schema names and key prefixes."""
    return uuid.uuid4().hex[:12]


def versions() -> dict[str, Any]:
    """Python and SQLite library versions of this interpreter."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
    }


@dataclass
class LoopRun:
    """What :func:`closed_loop` measured."""

    latencies: list[float]
    """Seconds, one per call of ``one``."""
    wall: float
    """Seconds from the first call to the last return."""
    cpu: float
    """Process CPU seconds over the same span."""


async def closed_loop(one: Callable[[], Awaitable[float]], n: int, concurrency: int) -> LoopRun:
    """Call ``one`` (which returns a latency in seconds) ``n`` times with
    ``concurrency`` calls in flight, each caller starting its next call as soon as its
    last one returned."""
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            latencies.append(await one())

    cpu0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoopRun(latencies, time.perf_counter() - started, time.process_time() - cpu0)
