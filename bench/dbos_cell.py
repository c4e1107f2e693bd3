"""One DBOS Transact benchmark cell (see notes/BENCH.md for the JSON it returns).

    python -m bench.dbos_cell --store sqlite|postgres --workload throughput|event \
        --n N --concurrency C --json OUT.json [--dbos-mode direct|start]

DBOS is written the way its documentation shows: ``@DBOS.workflow`` / ``@DBOS.step`` on
plain synchronous functions, configured with ``system_database_url`` and otherwise
defaults (connection pool 20, LISTEN/NOTIFY on PostgreSQL, 1 s listener poll on SQLite).

Throughput: C client threads, each calling the workflow function directly (closed loop,
C in flight); ``--dbos-mode start`` uses ``DBOS.start_workflow`` + ``get_result`` per
client thread instead (one more thread hop, DBOS's own executor pool).

Event: a workflow waits in ``DBOS.recv``; the client polls ``DBOS.list_workflow_steps``
until the recv's durable timeout record is committed (recv registers its in-memory waiter
and checks the table before it writes that record), then calls ``DBOS.send``. Latency =
send() call start -> the step after recv starts (``perf_counter``, same process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig

from bench.common import latency_summary, versions

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BASE_URL = "postgresql://postgres@127.0.0.1:5432/"
SQLITE_LISTENER_POLL_S = 1.0  # DBOS default notification_listener_polling_interval_sec
EVENT_TOPIC = "go"


# ---------------------------------------------------------------- workload
@DBOS.step()
def step_one(x: int) -> tuple[int, float]:
    """First step: work on the input and draw the random number the branch uses."""
    return x + 1, random.random()


@DBOS.step()
def step_two_a(x: int) -> int:
    """Second step, 'then' branch."""
    return x * 2


@DBOS.step()
def step_two_b(x: int) -> int:
    """Second step, 'else' branch."""
    return x * 3


@DBOS.step()
def step_three(x: int) -> int:
    """Third step."""
    return x - 1


@DBOS.workflow()
def perf_workflow(x: int) -> int:
    """Workflow Core's perf workflow: three steps, the second an if/else on a random number.

    The random number is drawn in a step (DBOS workflows must be deterministic).
    """
    y, r = step_one(x)
    z = step_two_a(y) if r < 0.5 else step_two_b(y)
    return step_three(z)


@DBOS.step()
def after_recv(msg: str) -> float:
    """The step after the wait: record when it starts running."""
    return time.perf_counter()


@DBOS.workflow()
def event_workflow() -> float:
    """Wait for a message, then run one step; returns the step's start time."""
    msg = DBOS.recv(EVENT_TOPIC, timeout_seconds=120)
    if msg is None:
        raise RuntimeError("recv timed out")
    return after_recv(msg)


# ---------------------------------------------------------------- stores
class Store:
    """A fresh system database for one cell, created and removed by this process."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tmpdir: str | None = None
        self.dbname: str | None = None
        if kind == "sqlite":
            self.tmpdir = tempfile.mkdtemp(prefix="wfe_bench_dbos_")
            path = os.path.join(self.tmpdir, "dbos_sys.sqlite")
            # journal_mode=WAL is persistent in the file, so DBOS's connections inherit it.
            # synchronous is per connection: DBOS sets only busy_timeout, foreign_keys and
            # IMMEDIATE transactions, so _force_sqlite_full() sets FULL on every connection.
            con = sqlite3.connect(path)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.close()
            self.url = f"sqlite:///{path}"
            _force_sqlite_full()
        elif kind == "postgres":
            import psycopg

            self.dbname = f"wfe_bench_dbos_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as pg:
                pg.execute(f'CREATE DATABASE "{self.dbname}"')
                # Durability as the server default, pinned for every session on this db.
                pg.execute(f'ALTER DATABASE "{self.dbname}" SET synchronous_commit = on')
            self.url = PG_BASE_URL + self.dbname
        else:
            raise SystemExit(f"dbos cell: unsupported store {kind!r} (sqlite|postgres)")

    def close(self) -> None:
        """Remove the database (after DBOS.destroy())."""
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.dbname is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


_full_listener_installed = False


def _force_sqlite_full() -> None:
    """Set synchronous=FULL on every new SQLite DBAPI connection of any engine."""
    global _full_listener_installed
    if _full_listener_installed:
        return

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute("PRAGMA synchronous=FULL")

    sa.event.listen(sa.engine.Engine, "connect", on_connect)
    _full_listener_installed = True


def _sys_engine() -> sa.Engine:
    """DBOS's system-database engine (private attribute; used only to count and verify)."""
    from dbos._dbos import _get_dbos_instance

    engine: sa.Engine = _get_dbos_instance()._sys_db.engine
    return engine


def _durability(kind: str) -> dict[str, str]:
    """What DBOS's own connections ended up with."""
    with _sys_engine().connect() as c:
        if kind == "sqlite":
            jm = c.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = c.exec_driver_sql("PRAGMA synchronous").scalar()
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            out = {"journal_mode": str(jm), "synchronous": names.get(int(sync or 0), str(sync))}
        else:
            sc = c.exec_driver_sql("SHOW synchronous_commit").scalar()
            fs = c.exec_driver_sql("SHOW fsync").scalar()
            out = {"synchronous_commit": str(sc), "fsync": str(fs)}
        c.rollback()
    return out


class CommitCounter:
    """Counts committed transactions on DBOS's engine (SQLAlchemy 'commit' events)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        sa.event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, conn: Any) -> None:
        with self._lock:
            self.count += 1


# ---------------------------------------------------------------- workloads
def _closed_loop(n: int, c: int, one: Callable[[int], None]) -> tuple[float, list[float]]:
    """Run one(i) for i in range(n) from c threads (c in flight); wall time + latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))
    errors: list[BaseException] = []

    def worker() -> None:
        local: list[float] = []
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                one(i)
                local.append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, c))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, latencies


def _check(x: int, out: int) -> None:
    if out not in ((x + 1) * 2 - 1, (x + 1) * 3 - 1):
        raise AssertionError(f"wrong result {out} for input {x}")


def _run_direct(i: int) -> None:
    _check(i, perf_workflow(i))


def _run_start(i: int) -> None:
    _check(i, DBOS.start_workflow(perf_workflow, i).get_result())


def _wait_registered(workflow_id: str, timeout_s: float = 30.0) -> None:
    """Bounded poll until the workflow's recv has committed its durable-timeout record."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        steps = DBOS.list_workflow_steps(workflow_id, load_output=False)
        if any(s["function_name"] == "DBOS.sleep" for s in steps):
            return
        time.sleep(0.002)
    raise TimeoutError(f"workflow {workflow_id} did not reach recv in {timeout_s}s")


def _one_event(dephase: bool, samples: list[float], send_ms: list[float]) -> None:
    handle = DBOS.start_workflow(event_workflow)
    wid = handle.get_workflow_id()
    _wait_registered(wid)
    if dephase:
        # SQLite delivery is a poll every SQLITE_LISTENER_POLL_S; the waits here start right
        # after a poll tick woke the previous one, so send at a random phase (as measured
        # before) instead of always just after a tick.
        time.sleep(random.uniform(0.0, SQLITE_LISTENER_POLL_S))
    t0 = time.perf_counter()
    DBOS.send(wid, "payload", topic=EVENT_TOPIC)
    t1 = time.perf_counter()
    resumed_at = handle.get_result()
    samples.append(resumed_at - t0)
    send_ms.append((t1 - t0) * 1000.0)


# ---------------------------------------------------------------- entry point
def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one DBOS cell in this process and return the BENCH.md result dict."""
    kind: str = args.store
    n: int = args.n
    c: int = max(1, args.concurrency)
    mode: str = getattr(args, "dbos_mode", None) or "direct"
    store = Store(kind)
    launched = False
    try:
        cfg: DBOSConfig = {
            "name": "wfe-bench-dbos",
            "system_database_url": store.url,
            "log_level": "WARNING",
        }
        DBOS(config=cfg)
        DBOS.launch()
        launched = True
        durability = _durability(kind)
        counter = CommitCounter(_sys_engine())

        result: dict[str, Any] = {
            "engine": "dbos",
            "store": kind,
            "workload": args.workload,
            "n": n,
            "concurrency": c,
        }
        notes = [f"durability {json.dumps(durability, sort_keys=True)}"]
        if args.workload == "throughput":
            one = _run_start if mode == "start" else _run_direct
            one(1_000_000)  # untimed warm-up
            c0 = counter.count
            cpu0 = time.process_time()
            wall, lat = _closed_loop(n, c, one)
            cpu = time.process_time() - cpu0
            result.update(
                wall_s=wall,
                workflows_per_s=n / wall,
                latency_ms=latency_summary(lat),
                commits_per_workflow=(counter.count - c0) / n,
                cpu_s=cpu,
            )
            how = (
                "DBOS.start_workflow + get_result"
                if mode == "start"
                else "direct call of the @DBOS.workflow function"
            )
            notes.append(f"mode={mode}: {c} client threads, each a closed loop of {how}")
            notes.append(
                "commits = SQLAlchemy commit events on DBOS's engine (incl. read-only txns)"
            )
        elif args.workload == "event":
            samples: list[float] = []
            send_ms: list[float] = []
            warm: list[float] = []
            dephase = kind == "sqlite"
            _one_event(False, warm, [])  # untimed warm-up, no random phase
            c0 = counter.count
            cpu0 = time.process_time()
            wall, _ = _closed_loop(n, c, lambda _i: _one_event(dephase, samples, send_ms))
            cpu = time.process_time() - cpu0
            result.update(
                wall_s=wall,
                workflows_per_s=n / wall,
                latency_ms=latency_summary(samples),
                commits_per_workflow=None,
                cpu_s=cpu,
            )
            # The count here includes the client's registration polls (and, on SQLite,
            # the listener's poll reads), so it is not a per-workflow cost: notes only.
            notes.append(f"commits per sample incl. polls {(counter.count - c0) / n:.1f}")
            result["send_call_ms"] = latency_summary([m / 1000.0 for m in send_ms])
            notes.append(
                "latency = DBOS.send() call start -> step after recv starts; send issued "
                "once recv's timeout record is committed (bounded poll of list_workflow_steps)"
            )
            if kind == "sqlite":
                notes.append(
                    f"SQLite: recv woken by DBOS's listener poll every {SQLITE_LISTENER_POLL_S}s "
                    "(default); send at a random phase uniform(0, poll) after the wait; "
                    "commits include the poll's own reads"
                )
            else:
                notes.append("PostgreSQL: LISTEN/NOTIFY (DBOS default)")
            if c > 1:
                notes.append(f"{c} sample loops in parallel")
        else:
            raise SystemExit(f"unknown workload {args.workload!r}")

        result["versions"] = {
            **versions(),
            "dbos": version("dbos"),
            "sqlalchemy": sa.__version__,
            "psycopg": version("psycopg"),
        }
        if kind == "postgres":
            with _sys_engine().connect() as con:
                result["versions"]["postgres"] = str(
                    con.exec_driver_sql("SHOW server_version").scalar()
                )
        result["notes"] = "; ".join(notes)
        return result
    finally:
        if launched:
            DBOS.destroy()
        store.close()


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.dbos_cell")
    p.add_argument("--store", choices=["sqlite", "postgres"], required=True)
    p.add_argument("--workload", choices=["throughput", "event"], required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--dbos-mode", choices=["direct", "start"], default="direct")
    p.add_argument("--json", dest="json_out", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run one cell and write or print its JSON."""
    args = _parse(argv)
    args.engine = "dbos"
    out = run(args)
    text = json.dumps(out)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
