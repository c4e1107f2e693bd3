"""Profile wfe's throughput workload on the SQL stores (cProfile, event-loop thread).

    python -m bench.profile [--quick] --json OUT.json

For each store (SQLite file, PostgreSQL) one untimed warm-up, then the perf workflow
under cProfile. Reported per store: the share of the event loop's wall time spent idle
in ``epoll`` (waiting on the store or the writer thread), process CPU per workflow, the
top functions by own time, and the cumulative time of the engine's main parts. cProfile
slows Python code down (roughly x1.5-2), so the shares matter, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from typing import Any

from bench import wfe_cell

PARTS = {
    "executor: run a pass (incl. checkpoints)": ("executor.py", "run"),
    "executor: run one step": ("executor.py", "_execute"),
    "provider: persist_workflow (build rows + write)": (
        "repository/workflows.py",
        "persist_workflow",
    ),
    "provider: create_workflow": ("repository/workflows.py", "create_workflow"),
    "provider: rows of changed pointers": ("repository/codec.py", "_pointer_values"),
    "provider: load an instance": ("repository/workflows.py", "get_workflow_instance"),
    "serializer: dumps": ("serialization/serializer.py", "dumps"),
    "group commit: submit": ("group_commit.py", "submit"),
}


def _short(path: str) -> str:
    for marker in ("/src/", "/lib/python3", "/bench/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib/") and "/" in tail else tail
    return path


async def _profile(store: str, n: int, concurrency: int) -> dict[str, Any]:
    await wfe_cell.run_throughput(store, 20, concurrency)  # warm-up: imports, schema, caches
    profiler = cProfile.Profile()
    cpu0, t0 = time.process_time(), time.perf_counter()
    profiler.enable()
    result = await wfe_cell.run_throughput(store, n, concurrency)
    profiler.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = pstats.Stats(profiler)
    entries: list[tuple[str, int, str, float, float, int]] = []
    idle = 0.0
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == "<method 'poll' of 'select.epoll' objects>":
            idle += tt
        entries.append((file, line, func, tt, ct, nc))
    entries.sort(key=lambda e: e[3], reverse=True)
    top = [
        {"where": f"{_short(f)}:{ln}({fn})", "own_s": tt, "cum_s": ct, "calls": nc}
        for f, ln, fn, tt, ct, nc in entries[:15]
    ]
    parts: dict[str, float] = {}
    for label, (file_end, func) in PARTS.items():
        parts[label] = max(
            (ct for f, _ln, fn, _tt, ct, _nc in entries if f.endswith(file_end) and fn == func),
            default=0.0,
        )
    return {
        "store": store,
        "n": n,
        "concurrency": concurrency,
        "profiled_wall_s": wall,
        "profiled_cpu_ms_per_wf": cpu * 1000 / n,
        "loop_idle_share": idle / wall if wall else None,
        "workflows_per_s_under_profiler": result["workflows_per_s"],
        "durable_commits_per_workflow": result.get("durable_commits_per_workflow"),
        "top": top,
        "parts_s": parts,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_out", required=True)
    args = p.parse_args(argv)
    n = 150 if args.quick else 600
    out = {
        "profiles": [
            asyncio.run(_profile("sqlite", n, 64)),
            asyncio.run(_profile("postgres", n, 8)),
        ]
    }
    with open(args.json_out, "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
