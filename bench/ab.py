"""Before / after: the same bench cells on two source trees, interleaved.

``python -m bench.ab --before /tmp/old --rounds 5`` runs each cell once on the tree at
``--before`` (a checkout of an older commit, e.g. ``git worktree add /tmp/old REV``) and
once on this tree, alternating A B A B ... so that load on a shared machine hits both
alike, and prints the median of each side and their ratio. The cells run in fresh
subprocesses with ``PYTHONPATH`` set to the tree's ``*/src`` directories (this tree's
``bench`` package drives both, so the harness is the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELLS = [
    ("memory", "throughput", 400, 64),
    ("sqlite", "throughput", 400, 64),
    ("postgres", "throughput", 400, 64),
    ("sqlite", "event", 100, 1),
    ("postgres", "event", 100, 1),
]


def _pythonpath(tree: Path) -> str:
    srcs = sorted(str(p) for p in tree.glob("*/src")) + [str(p) for p in [tree / "conformance/src"]]
    return os.pathsep.join([str(ROOT), *srcs])


def _cell(tree: Path, store: str, workload: str, n: int, c: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        env = dict(os.environ, PYTHONPATH=_pythonpath(tree))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.cell",
                "--engine",
                "wfe",
                "--store",
                store,
                "--workload",
                workload,
                "--n",
                str(n),
                "--concurrency",
                str(c),
                "--json",
                str(out),
            ],
            check=True,
            env=env,
            cwd=tmp,
        )
        return dict(json.loads(out.read_text()))


def _metric(result: dict[str, float], workload: str) -> float:
    if workload == "throughput":
        return float(result["workflows_per_s"])
    return float(result["latency_ms"]["p50"])  # type: ignore[index]


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab")
    p.add_argument("--before", type=Path, required=True, help="the older source tree")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--stores", default="memory,sqlite,postgres")
    args = p.parse_args()
    stores = set(args.stores.split(","))
    trees = {"before": args.before.resolve(), "after": ROOT}
    print("| cell | before (median) | after (median) | after / before |")
    print("|---|---|---|---|")
    for store, workload, n, c in CELLS:
        if store not in stores:
            continue
        seen: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for side in ("before", "after"):
                seen[side].append(_metric(_cell(trees[side], store, workload, n, c), workload))
        before, after = statistics.median(seen["before"]), statistics.median(seen["after"])
        unit = "wf/s" if workload == "throughput" else "ms p50"
        print(
            f"| {store} {workload} n={n} c={c} | {before:.1f} {unit} | {after:.1f} {unit} "
            f"| {after / before:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
