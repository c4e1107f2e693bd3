"""Run the whole benchmark and write bench/RESULTS.md.

    uv run --group bench python -m bench [--quick] [--rounds R]

Every cell runs in its own subprocess (``python -m bench.cell``) on a fresh store.
Engines alternate per (store, workload, concurrency) and the order flips every round
(ABBA); medians over rounds are reported, with the wfe / DBOS ratio per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STORES = ["memory", "sqlite", "postgres", "postgres+redis"]
DBOS_STORES = {"sqlite", "postgres"}
CONCURRENCY = [1, 8, 64, 256]


def have_dbos() -> bool:
    """True when helper J's DBOS cell exists."""
    return (HERE / "dbos_cell.py").exists()


def n_for(workload: str, engine: str, store: str, concurrency: int, quick: bool) -> int:
    """Workflows per cell: enough to last a few seconds, fewer in --quick."""
    if workload == "event":
        return 20 if quick else 100
    if quick:
        base = 300 if store == "memory" else 100
        if engine == "dbos":
            base = 60
        return max(base, 2 * concurrency) if engine == "wfe" else max(base, concurrency)
    base = 3000 if store == "memory" else 600
    if engine == "dbos":
        base = 300
    return max(base, 4 * concurrency)


def run_cell(
    engine: str, store: str, workload: str, n: int, concurrency: int, timeout: float
) -> dict[str, Any]:
    """Run one cell in a subprocess; a failed cell becomes {"error": ...}."""
    fd, out = tempfile.mkstemp(prefix="bench_cell_", suffix=".json")
    os.close(fd)
    cmd = [
        sys.executable, "-m", "bench.cell", "--engine", engine, "--store", store,
        "--workload", workload, "--n", str(n), "--concurrency", str(concurrency),
        "--json", out,
    ]  # fmt: skip
    base = {"engine": engine, "store": store, "workload": workload, "n": n,
            "concurrency": concurrency}  # fmt: skip
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
        text = Path(out).read_text() if Path(out).stat().st_size else ""
        if proc.returncode != 0 or not text:
            tail = (proc.stderr or proc.stdout or "")[-1500:]
            return {**base, "error": f"exit {proc.returncode}: {tail}"}
        result: dict[str, Any] = json.loads(text)
        return result
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timeout after {timeout:.0f}s"}
    finally:
        Path(out).unlink(missing_ok=True)
        sys.stderr.write(
            f"  {engine:4} {store:15} {workload:10} c={concurrency:<3} n={n:<5} "
            f"{time.monotonic() - t0:6.1f}s\n"
        )


def plan(quick: bool) -> list[tuple[str, str, int]]:
    """(store, workload, concurrency) groups; each group runs every engine."""
    groups: list[tuple[str, str, int]] = []
    for store in STORES:
        for c in CONCURRENCY:
            groups.append((store, "throughput", c))
        groups.append((store, "event", 1))
    return groups


def calibrate() -> float:
    """Nanoseconds per iteration of a plain Python loop (median of 5): how fast this
    host runs Python right now, to compare runs made on different hosts."""
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        samples.append((time.perf_counter() - t0) / 2_000_000 * 1e9)
    return sorted(samples)[2]


def run_aux(module: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Run bench.limits, bench.growth or bench.profile in a subprocess; return its JSON."""
    fd, out = tempfile.mkstemp(prefix=f"bench_{module}_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", f"bench.{module}", "--json", out]
    if quick:
        cmd.append("--quick")
    sys.stderr.write(f"running bench.{module} ...\n")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
        text = Path(out).read_text() if Path(out).stat().st_size else ""
        if proc.returncode != 0 or not text:
            return {"error": f"exit {proc.returncode}: {(proc.stderr or '')[-1500:]}"}
        data: dict[str, Any] = json.loads(text)
        return data
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    finally:
        Path(out).unlink(missing_ok=True)
        sys.stderr.write(f"  bench.{module} {time.monotonic() - t0:.1f}s\n")


def run_markdown(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``bench.round2`` or ``bench.processes`` (their own ``--rounds``, their JSON
    to a temporary file); return ``{"markdown": stdout, "data": the JSON}`` or
    ``{"error": ...}``."""
    fd, out = tempfile.mkstemp(prefix=f"bench_{module}_", suffix=".json")
    os.close(fd)
    flag = "--raw" if module == "round2" else "--json"
    cmd = [sys.executable, "-m", f"bench.{module}", *args, flag, out]
    sys.stderr.write(f"running bench.{module} {' '.join(args)} ...\n")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            return {"error": f"exit {proc.returncode}: {(proc.stderr or '')[-1500:]}"}
        text = Path(out).read_text()
        return {"markdown": proc.stdout, "data": json.loads(text) if text else None}
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    finally:
        Path(out).unlink(missing_ok=True)
        sys.stderr.write(f"  bench.{module} {time.monotonic() - t0:.1f}s\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 round, small N, short limits")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    p.add_argument("--no-limits", action="store_true")
    p.add_argument("--no-growth", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-round2", action="store_true", help="skip issue 15's side-by-side run")
    p.add_argument("--no-processes", action="store_true", help="skip the process scaling")
    p.add_argument("--engines", default="wfe,dbos")
    p.add_argument("--stores", default=",".join(STORES))
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    p.add_argument("--raw", default=str(HERE / "results.json"))
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    engines = [e for e in args.engines.split(",") if e]
    if "dbos" in engines and not have_dbos():
        sys.stderr.write("bench/dbos_cell.py not found: DBOS cells skipped\n")
        engines = [e for e in engines if e != "dbos"]
    stores = [s for s in args.stores.split(",") if s]
    timeout = 180.0 if args.quick else 900.0
    started = time.time()
    speed_before = calibrate()
    cells: list[dict[str, Any]] = []
    groups = [g for g in plan(args.quick) if g[0] in stores]
    for rnd in range(rounds):
        sys.stderr.write(f"round {rnd + 1}/{rounds}\n")
        for gi, (store, workload, c) in enumerate(groups):
            order = [e for e in engines if e == "wfe" or store in DBOS_STORES]
            if (rnd + gi) % 2 == 1:
                order.reverse()
            for engine in order:
                n = n_for(workload, engine, store, c, args.quick)
                result = run_cell(engine, store, workload, n, c, timeout)
                result["round"] = rnd + 1
                cells.append(result)
    limits = {} if args.no_limits else run_aux("limits", args.quick, 600)
    growth = {} if args.no_growth else run_aux("growth", args.quick, 1800)
    profile = {} if args.no_profile else run_aux("profile", args.quick, 600)
    quick = ["--quick"] if args.quick else []
    round2 = (
        {}
        if args.no_round2 or "dbos" not in engines
        else run_markdown("round2", ["--rounds", str(rounds), *quick], 5400)
    )
    processes = (
        {}
        if args.no_processes
        else run_markdown(
            "processes", ["--rounds", str(rounds), "--n", "1000" if args.quick else "4000"], 5400
        )
    )
    raw = {
        "argv": ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "quick": args.quick,
        "rounds": rounds,
        "started": started,
        "finished": time.time(),
        "cells": cells,
        "limits": limits,
        "growth": growth,
        "profile": profile,
        "round2": round2,
        "processes": processes,
        "calibration_ns_per_loop": [speed_before, calibrate()],
    }
    Path(args.raw).write_text(json.dumps(raw, indent=1))
    from bench.report import write_report

    write_report(raw, Path(args.out))
    sys.stderr.write(f"wrote {args.out} and {args.raw}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
