"""Issue 15's side-by-side run: wfe's tuned and user paths against DBOS, one run.

    uv run --group bench python -m bench.round2 [--rounds R] [--quick]

Cells (each in a fresh subprocess on a fresh store, engines alternating, the order
flipping every round; medians over rounds):

* throughput on SQLite and PostgreSQL at C = 16, 64, 256: wfe ``throughput`` (the bench's
  tuned workflow: ``async def`` steps, completion seen by a POST_WORKFLOW middleware), wfe
  ``user`` (three plain ``def`` steps, ``start_workflow`` + ``wait_for_workflow``), DBOS
  ``direct`` (the workflow function called) and DBOS ``start`` (``DBOS.start_workflow`` +
  ``get_result``, its user path);
* memory: wfe ``throughput``, ``user`` and ``user_async`` at C = 64 and 256;
* event latency at C = 1 on SQLite and PostgreSQL: wfe ``user_event`` (def steps) and
  DBOS ``event``.

Prints a Markdown report (tables and the targets) to stdout; the JSON of every cell to
``--raw``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

CONCURRENCY = (16, 64, 256)


def _cell(
    engine: str, store: str, workload: str, n: int, c: int, mode: str | None
) -> dict[str, Any]:
    fd, out = tempfile.mkstemp(prefix="round2_", suffix=".json")
    os.close(fd)
    if engine == "dbos":
        cmd = [sys.executable, "-m", "bench.dbos_cell", "--store", store, "--workload", workload,
               "--n", str(n), "--concurrency", str(c), "--dbos-mode", mode or "direct",
               "--json", out]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "bench.cell", "--engine", "wfe", "--store", store,
               "--workload", workload, "--n", str(n), "--concurrency", str(c),
               "--json", out]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            return {"error": proc.stderr[-2000:]}
        with open(out) as fh:
            found: dict[str, Any] = json.load(fh)
        return found
    finally:
        os.unlink(out)


def _plan(quick: bool) -> list[tuple[str, str, str, str, list[int]]]:
    """(label, engine, store, workload/mode, concurrencies)."""
    cs = [64] if quick else list(CONCURRENCY)
    plan: list[tuple[str, str, str, str, list[int]]] = []
    for store in ("sqlite", "postgres"):
        plan += [
            ("wfe tuned", "wfe", store, "throughput", cs),
            ("wfe user", "wfe", store, "user", cs),
            ("dbos direct", "dbos", store, "direct", cs),
            ("dbos start", "dbos", store, "start", cs),
            ("wfe user_event", "wfe", store, "user_event", [1]),
            ("dbos event", "dbos", store, "event", [1]),
        ]
    mem = [64] if quick else [64, 256]
    plan += [
        ("wfe tuned", "wfe", "memory", "throughput", mem),
        ("wfe user", "wfe", "memory", "user", mem),
        ("wfe user_async", "wfe", "memory", "user_async", mem),
    ]
    return plan


def _n(engine: str, store: str, workload: str, c: int, quick: bool) -> int:
    if workload in ("user_event", "event"):
        return 60 if quick else 200
    if engine == "dbos":
        return max(150 if quick else 300, c)
    base = 3000 if store == "memory" else 1000
    return max(base // (3 if quick else 1), 4 * c)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.round2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--raw", default=None)
    args = p.parse_args(argv)
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    plan = _plan(args.quick)
    for r in range(args.rounds):
        order = plan if r % 2 == 0 else list(reversed(plan))
        for label, engine, store, what, cs in order:
            for c in cs:
                workload = (
                    "throughput" if engine == "dbos" and what in ("direct", "start") else what
                )
                mode = what if engine == "dbos" and what in ("direct", "start") else None
                n = _n(engine, store, workload, c, args.quick)
                found = _cell(engine, store, workload, n, c, mode)
                results.setdefault((label, store, c), []).append(found)
                brief = {k: found.get(k) for k in ("workflows_per_s", "latency_ms", "error")}
                print(f"round {r + 1} {label} {store} c={c}: {brief}", file=sys.stderr)
    if args.raw:
        with open(args.raw, "w") as fh:
            json.dump({f"{k[0]}|{k[1]}|{k[2]}": v for k, v in results.items()}, fh)
    print(report(results))
    return 0


def _med(cells: list[dict[str, Any]], key: str, sub: str | None = None) -> float | None:
    values = []
    for cell in cells:
        if "error" in cell:
            continue
        value = cell.get(key)
        if sub is not None and isinstance(value, dict):
            value = value.get(sub)
        if isinstance(value, (int, float)):
            values.append(float(value))
    return statistics.median(values) if values else None


def _cpu(cells: list[dict[str, Any]]) -> float | None:
    values = [c["cpu_s"] / c["n"] * 1000 for c in cells if "error" not in c and c.get("cpu_s")]
    return statistics.median(values) if values else None


def _best(
    results: dict[tuple[str, str, int], list[dict[str, Any]]], label: str, store: str
) -> tuple[float, int] | None:
    best: tuple[float, int] | None = None
    for (lab, st, c), cells in results.items():
        if lab == label and st == store:
            rate = _med(cells, "workflows_per_s")
            if rate is not None and (best is None or rate > best[0]):
                best = (rate, c)
    return best


def row(*cells: object) -> str:
    """A Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def report(results: dict[tuple[str, str, int], list[dict[str, Any]]]) -> str:
    lines = ["### Throughput (workflows/s, medians; CPU ms per workflow of the wfe process)", ""]
    lines += [row("store", "C", "wfe tuned", "wfe user", "DBOS direct", "DBOS start",
                  "tuned / DBOS direct", "user / DBOS start", "wfe user CPU ms/wf"),
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def fmt(x: float | None, digits: int = 1) -> str:
        return "—" if x is None else f"{x:,.{digits}f}"

    for store in ("sqlite", "postgres"):
        cs = sorted(
            {
                c
                for (lab, st, c) in results
                if st == store and lab.startswith(("wfe tuned", "dbos direct"))
            }
        )
        for c in cs:

            def get(lab: str, store: str = store, c: int = c) -> float | None:
                return _med(results.get((lab, store, c), []), "workflows_per_s")

            tuned, user, direct, start = (
                get("wfe tuned"),
                get("wfe user"),
                get("dbos direct"),
                get("dbos start"),
            )
            r1 = tuned / direct if tuned and direct else None
            r2 = user / start if user and start else None
            cpu = _cpu(results.get(("wfe user", store, c), []))
            lines.append(
                row(
                    store,
                    c,
                    fmt(tuned),
                    fmt(user),
                    fmt(direct),
                    fmt(start),
                    f"{fmt(r1, 2)}x",
                    f"{fmt(r2, 2)}x",
                    fmt(cpu, 3),
                )
            )
    lines += [
        "",
        "### Memory store",
        "",
        row(
            "C",
            "tuned wf/s",
            "user (def) wf/s",
            "user (async def) wf/s",
            "CPU ms/wf tuned / def / async",
        ),
        "|---|---|---|---|---|",
    ]
    for c in sorted({c for (lab, st, c) in results if st == "memory"}):
        vals = [
            results.get((lab, "memory", c), [])
            for lab in ("wfe tuned", "wfe user", "wfe user_async")
        ]
        rates = [fmt(_med(v, "workflows_per_s")) for v in vals]
        cpus = " / ".join(fmt(_cpu(v), 3) for v in vals)
        lines.append(f"| {c} | {rates[0]} | {rates[1]} | {rates[2]} | {cpus} |")
    lines += ["", "### Event latency (publish -> the step after the wait starts; C = 1)", "",
              row("store", "wfe p50 ms", "wfe p99 ms", "DBOS p50 ms", "DBOS p99 ms",
                  "DBOS p50 / wfe p50"), "|---|---|---|---|---|---|"]  # fmt: skip
    for store in ("sqlite", "postgres"):
        w = results.get(("wfe user_event", store, 1), [])
        d = results.get(("dbos event", store, 1), [])
        wp50, wp99 = _med(w, "latency_ms", "p50"), _med(w, "latency_ms", "p99")
        dp50, dp99 = _med(d, "latency_ms", "p50"), _med(d, "latency_ms", "p99")
        ratio = dp50 / wp50 if wp50 and dp50 else None
        lines.append(
            row(store, fmt(wp50, 2), fmt(wp99, 2), fmt(dp50, 2), fmt(dp99, 2), f"{fmt(ratio, 1)}x")
        )
    lines += ["", "### Best concurrency of each (the issue's ratios)", "",
              row("store", "wfe tuned best", "wfe user best", "DBOS direct best",
                  "DBOS start best", "tuned / DBOS", "user / DBOS (start)"),
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for store in ("sqlite", "postgres"):
        b = {
            lab: _best(results, lab, store)
            for lab in ("wfe tuned", "wfe user", "dbos direct", "dbos start")
        }

        def bf(x: tuple[float, int] | None) -> str:
            return "—" if x is None else f"{x[0]:,.1f} (C={x[1]})"

        r1 = (
            b["wfe tuned"][0] / b["dbos direct"][0] if b["wfe tuned"] and b["dbos direct"] else None
        )
        r2 = b["wfe user"][0] / b["dbos start"][0] if b["wfe user"] and b["dbos start"] else None
        lines.append(
            row(
                store,
                bf(b["wfe tuned"]),
                bf(b["wfe user"]),
                bf(b["dbos direct"]),
                bf(b["dbos start"]),
                f"{fmt(r1, 2)}x",
                f"{fmt(r2, 2)}x",
            )
        )
    lines += ["", "### Targets (issue 15) measured here", "", *targets(results)]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


def targets(results: dict[tuple[str, str, int], list[dict[str, Any]]]) -> list[str]:
    """The issue-15 targets this run measures (throughput ratios, `def` vs `async def`,
    memory, event latency), as Markdown table rows with their verdicts."""
    out = [row("target", "measured", "verdict"), "|---|---|---|"]
    for store in ("sqlite", "postgres"):
        b = {
            lab: _best(results, lab, store)
            for lab in ("wfe tuned", "wfe user", "dbos direct", "dbos start")
        }
        for path, mine, theirs in (
            ("tuned", "wfe tuned", "dbos direct"),
            ("user", "wfe user", "dbos start"),
        ):
            w, d = b[mine], b[theirs]
            ratio, shown = None, "—"
            if w and d:
                ratio = w[0] / d[0]
                shown = f"{ratio:.2f}x ({w[0]:,.0f} / {d[0]:,.0f} wf/s)"
            out.append(
                row(
                    f">= 10x DBOS, {store}, {path} path",
                    shown,
                    _verdict(None if ratio is None else ratio >= 10),
                )
            )
    cs = sorted({c for (lab, st, c) in results if st == "memory"})
    for c in cs:
        sync = _cpu(results.get(("wfe user", "memory", c), []))
        asy = _cpu(results.get(("wfe user_async", "memory", c), []))
        ratio = sync / asy if sync and asy else None
        shown = "—" if ratio is None else f"{ratio:.2f}x CPU ({sync:.3f} / {asy:.3f} ms)"
        out.append(
            row(
                f"`def` step <= 1.25x `async def`, memory C={c}",
                shown,
                _verdict(None if ratio is None else ratio <= 1.25),
            )
        )
    for c in cs:
        for path, lab in (("tuned", "wfe tuned"), ("user", "wfe user")):
            cells = results.get((lab, "memory", c), [])
            rate, cpu = _med(cells, "workflows_per_s"), _cpu(cells)
            ok = None if rate is None or cpu is None else rate >= 2500 and cpu <= 0.4
            shown = "—" if rate is None or cpu is None else f"{rate:,.0f} wf/s, {cpu:.3f} ms CPU"
            out.append(
                row(f"memory >= 2,500 wf/s and <= 0.4 ms, {path}, C={c}", shown, _verdict(ok))
            )
    for store in ("sqlite", "postgres"):
        cells = results.get(("wfe user_event", store, 1), [])
        p50, p99 = _med(cells, "latency_ms", "p50"), _med(cells, "latency_ms", "p99")
        ok = None if p50 is None or p99 is None else p50 <= 3 and p99 <= 10
        shown = "—" if p50 is None or p99 is None else f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        out.append(row(f"event p50 <= 3 ms and p99 <= 10 ms, {store}", shown, _verdict(ok)))
    w = _med(results.get(("wfe user_event", "postgres", 1), []), "latency_ms", "p50")
    d = _med(results.get(("dbos event", "postgres", 1), []), "latency_ms", "p50")
    ratio = d / w if w and d else None
    shown = "—" if ratio is None else f"{ratio:.1f}x (DBOS p50 {d:.2f} ms / wfe {w:.2f} ms)"
    out.append(
        row(
            "event latency >= 5x better than DBOS, postgres",
            shown,
            _verdict(None if ratio is None else ratio >= 5),
        )
    )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
