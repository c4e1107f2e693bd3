"""The dashboard's instance list on a large store: does paging slow down?

``python -m bench.dashboard_paging --rows 1000000`` fills a SQLite file with that many
instance headers (bulk-inserted with sqlite3, spread over a year, a few definitions and
statuses), then times, through a real :class:`~wfe_core.WorkflowClient` and the
dashboard's own :func:`wfe_dashboard.paging.read_page`: the first page, a page in the
middle and the last page (keyset cursors), the same with a status filter and with a
definition filter, and the counts by status the list shows. Each read is the median of
``--repeat`` runs. Prints a Markdown table for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from wfe_core.models import WorkflowStatus
from wfe_dashboard.paging import Cursor, Filters, read_page

from wfe_core import WorkflowClient

PAGE = 50
_STATUSES = ["complete"] * 90 + ["terminated"] * 4 + ["runnable"] * 5 + ["suspended"]
_DEFINITIONS = ["checkout", "refund", "onboarding", "report"]


def _fill(path: Path, rows: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    base = int(start.timestamp() * 1_000_000)
    year = 365 * 24 * 3600 * 1_000_000
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    sql = (
        "INSERT INTO wfe_workflows (id, workflow_definition_id, version, status, "
        "create_time, complete_time, revision) VALUES (?, ?, 1, ?, ?, ?, 1)"
    )
    batch: list[tuple[Any, ...]] = []
    for n in range(rows):
        created = base + rng.randrange(year)
        status = rng.choice(_STATUSES)
        done = created + 1000 if status in ("complete", "terminated") else None
        batch.append((f"w{n:09d}", rng.choice(_DEFINITIONS), status, created, done))
        if len(batch) == 50_000:
            conn.executemany(sql, batch)
            batch.clear()
    conn.executemany(sql, batch)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def _cursor_at(path: Path, offset: int, where: str = "") -> Cursor:
    conn = sqlite3.connect(path)
    row = conn.execute(
        f"SELECT create_time, id FROM wfe_workflows {where} "
        "ORDER BY create_time DESC, id DESC LIMIT 1 OFFSET ?",
        (offset,),
    ).fetchone()
    conn.close()
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=row[0])
    return Cursor(moment, row[1])


async def _median(repeat: int, call: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def _run(rows: int, repeat: int) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.db"
        async with WorkflowClient.from_url(f"sqlite:///{path}") as client:
            await client.persistence.ensure_store_exists()
        t0 = time.perf_counter()
        _fill(path, rows)
        print(f"filled {rows:,} rows in {time.perf_counter() - t0:.1f}s")
        out: list[tuple[str, float]] = []
        async with WorkflowClient.from_url(f"sqlite:///{path}?mode=ro") as client:
            for label, filters, where in (
                ("no filter", Filters(), ""),
                (
                    "status = runnable",
                    Filters(status=WorkflowStatus.RUNNABLE),
                    "WHERE status = 'runnable'",
                ),
                (
                    "definition = refund",
                    Filters(definition_id="refund"),
                    "WHERE workflow_definition_id = 'refund'",
                ),
            ):
                conn = sqlite3.connect(path)
                matching = conn.execute(f"SELECT count(*) FROM wfe_workflows {where}").fetchone()[0]
                conn.close()
                for where_label, offset in (
                    ("first page", None),
                    ("middle page", matching // 2),
                    ("last page", max(matching - PAGE - 1, 0)),
                ):
                    cursor = None if offset is None else _cursor_at(path, offset, where)

                    async def page(f: Filters = filters, c: Cursor | None = cursor) -> object:
                        return await read_page(client, f, c, PAGE)

                    out.append((f"{label}, {where_label}", await _median(repeat, page)))

            async def counts() -> object:
                return [await client.count_workflows(status=s) for s in WorkflowStatus]

            out.append(("counts by status (4 counts)", await _median(repeat, counts)))
        return out


def main() -> None:
    """Run the bench and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(_run(args.rows, args.repeat))
    print(f"\n| read ({args.rows:,} instances, page of {PAGE}) | median ms |")
    print("|---|---:|")
    for label, ms in results:
        print(f"| {label} | {ms:.1f} |")


if __name__ == "__main__":
    main()
