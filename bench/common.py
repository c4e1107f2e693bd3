"""Shared helpers for bench cells: store URLs, percentiles, versions."""

from __future__ import annotations

import platform
import sqlite3
import statistics
import sys
import uuid
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
