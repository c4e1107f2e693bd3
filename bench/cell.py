"""One benchmark cell in this process; writes one JSON object (see notes/BENCH.md).

    python -m bench.cell --engine wfe|dbos --store STORE --workload W --n N \
        --concurrency C --json OUT.json
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import sys
import time
from typing import Any


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cell")
    p.add_argument("--engine", choices=["wfe", "dbos"], required=True)
    p.add_argument(
        "--store", choices=["memory", "sqlite", "postgres", "postgres+redis"], required=True
    )
    p.add_argument(
        "--workload",
        choices=["throughput", "event", "user", "user_async", "user_event"],
        required=True,
    )
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--json", dest="json_out", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    if args.engine == "wfe":
        from bench import wfe_cell as mod
    else:
        from bench import dbos_cell as mod  # type: ignore[no-redef]
    cpu0 = time.process_time()
    result: Any = mod.run(args)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    result.setdefault("cpu_s", time.process_time() - cpu0)
    text = json.dumps(result)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
