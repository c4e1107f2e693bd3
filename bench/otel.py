"""The cost of OpenTelemetry instrumentation (issue 13): the same throughput cells with
instrumentation off (the default: ``host.instrumentation`` is None) and on
(``wfe_otel.instrument`` with the SDK's tracer provider, spans batched to an exporter
that drops them, and a meter provider read by the Prometheus reader) and "sampled" (the
same with a parent-based 10% trace sampler; metrics in full), interleaved.

``python -m bench.otel [--rounds 3] [--before TREE]`` runs every cell once per mode per
round, each in a fresh subprocess on a fresh store, alternating the modes and flipping
their order every round, and prints a Markdown table of the medians. ``--before TREE``
adds a third mode: the same cell on an older source tree (``git archive REV | tar -x -C
TREE``), to compare "off" with the engine before the hooks existed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CELLS = [("memory", 3000, 64), ("sqlite", 2000, 64), ("sqlite", 400, 1)]


async def _throughput(store: str, n: int, concurrency: int, mode: str) -> dict[str, Any]:
    from wfe_core.host import HostOptions, MiddlewarePhase
    from wfe_core.models import WorkflowInstance

    from bench.common import closed_loop
    from bench.wfe_cell import PerfData, PerfWorkflow, open_host

    spans: list[int] = [0]
    providers: list[Any] = []
    options = HostOptions(max_concurrent_workflows=max(32, concurrency))
    async with open_host(store, options) as host:
        if mode in ("on", "sampled"):
            providers = _instrument(host, spans, 1.0 if mode == "on" else 0.1)
        done: dict[str, asyncio.Future[float]] = {}
        early: dict[str, float] = {}
        loop = asyncio.get_running_loop()

        def ended(instance: WorkflowInstance) -> None:
            fut = done.pop(instance.id, None)
            if fut is None:
                early[instance.id] = time.perf_counter()
            elif not fut.done():
                fut.set_result(time.perf_counter())

        host.use_workflow_middleware(MiddlewarePhase.POST_WORKFLOW, ended)
        host.register_workflow(PerfWorkflow())
        await host.start()

        async def one() -> float:
            t0 = time.perf_counter()
            wid = await host.start_workflow("bench_perf", PerfData())
            if wid in early:
                return early.pop(wid) - t0
            fut: asyncio.Future[float] = loop.create_future()
            done[wid] = fut
            return await asyncio.wait_for(fut, 120) - t0

        await one()  # warm-up, untimed
        run = await closed_loop(one, n, concurrency)
        latencies, elapsed, cpu = run.latencies, run.wall, run.cpu
    for provider in providers:
        provider.shutdown()
    latencies.sort()
    return {
        "wf_s": n / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "cpu_ms_wf": cpu / n * 1000,
        "spans_wf": spans[0] / (n + 1),
    }


def _instrument(host: Any, spans: list[int], ratio: float) -> list[Any]:
    """wfe_otel on ``host`` with SDK providers that do all the work but keep nothing;
    traces sampled at ``ratio`` (parent-based: a workflow's trace is kept or not)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from prometheus_client import CollectorRegistry

    import wfe_otel

    class Drop(SpanExporter):
        def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
            spans[0] += len(batch)
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(  # as wfe_otel.serve_metrics makes it
        metric_readers=[PrometheusMetricReader(registry=CollectorRegistry())],
        exemplar_filter=AlwaysOffExemplarFilter(),
    )
    wfe_otel.instrument(host, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return [tracer_provider, meter_provider]


def _pythonpath(tree: Path) -> str:
    srcs = sorted(str(p) for p in tree.glob("*/src"))
    return os.pathsep.join([str(ROOT), *srcs])


def _cell(mode: str, store: str, n: int, c: int, before: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        env = dict(os.environ)
        cell_mode = mode
        if mode == "before":
            assert before is not None
            env["PYTHONPATH"] = _pythonpath(before)
            cell_mode = "off"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.otel",
                "--cell",
                cell_mode,
                store,
                str(n),
                str(c),
                str(out),
            ],
            check=True,
            env=env,
            cwd=ROOT,
        )
        found: dict[str, float] = json.loads(out.read_text())
        return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.otel")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", type=Path, default=None)
    p.add_argument("--cell", nargs=5, metavar=("MODE", "STORE", "N", "C", "OUT"))
    args = p.parse_args(argv)
    if args.cell:
        mode, store, n, c, out = args.cell
        found = asyncio.run(_throughput(store, int(n), int(c), mode))
        Path(out).write_text(json.dumps(found))
        return 0
    modes = ["off", "on", "sampled"] + (["before"] if args.before else [])
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for store, n, c in CELLS:
            order = modes if r % 2 == 0 else list(reversed(modes))
            for mode in order:
                found = _cell(mode, store, n, c, args.before)
                results.setdefault((f"{store} n={n} c={c}", mode), []).append(found)
                print(f"round {r + 1} {store} n={n} c={c} {mode}: {found}", file=sys.stderr)
    print(_table(results, modes))
    return 0


def _table(results: dict[tuple[str, str], list[dict[str, float]]], modes: list[str]) -> str:
    def med(cell: str, mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(cell, mode)])

    cells = list(dict.fromkeys(cell for cell, _ in results))
    head = ["cell"]
    if "before" in modes:
        head += ["before wf/s"]
    head += ["off wf/s", "on wf/s", "on / off", "10% sampled wf/s", "sampled / off"]
    head += ["off p50 ms", "on p50 ms", "off CPU ms/wf", "on CPU ms/wf", "spans/wf"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        row = [cell]
        if "before" in modes:
            row.append(f"{med(cell, 'before', 'wf_s'):.1f}")
        off, on = med(cell, "off", "wf_s"), med(cell, "on", "wf_s")
        sampled = med(cell, "sampled", "wf_s")
        row += [f"{off:.1f}", f"{on:.1f}", f"{on / off:.3f}", f"{sampled:.1f}"]
        row.append(f"{sampled / off:.3f}")
        row += [f"{med(cell, 'off', 'p50_ms'):.2f}", f"{med(cell, 'on', 'p50_ms'):.2f}"]
        row += [f"{med(cell, 'off', 'cpu_ms_wf'):.3f}", f"{med(cell, 'on', 'cpu_ms_wf'):.3f}"]
        row.append(f"{med(cell, 'on', 'spans_wf'):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
