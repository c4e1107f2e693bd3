"""The physical limits: raw committed single-row transactions per second.

* SQLite file, WAL + synchronous=FULL (the wfe provider's default), one connection:
  ``UPDATE ... WHERE id = 1`` + COMMIT in a loop.
* PostgreSQL (same server as the cells), one asyncpg connection: the same loop
  (autocommit, synchronous_commit as configured on the server).
* pgbench -n (TPC-B-like, 5 statements per transaction) with -c1 and -c16 on a scratch
  database this module creates (``pgbench -i``) and drops.

    python -m bench.limits [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import PG_URL, new_tag

PG_ADMIN = PG_URL


def sqlite_commits(seconds: float) -> dict[str, Any]:
    """Committed single-row updates/s on a fresh SQLite file (WAL, synchronous=FULL)."""
    tmp = tempfile.mkdtemp(prefix="wfe_limits_")
    try:
        conn = sqlite3.connect(f"{tmp}/limits.db", isolation_level=None)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 0)")
        count = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            conn.execute("BEGIN")
            conn.execute("UPDATE t SET v = v + 1 WHERE id = 1")
            conn.execute("COMMIT")
            count += 1
        wall = time.perf_counter() - t0
        conn.close()
        return {
            "tps": count / wall,
            "commits": count,
            "seconds": wall,
            "journal_mode": mode,
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
            "sqlite_version": sqlite3.sqlite_version,
            "path": "a fresh file in " + tempfile.gettempdir(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def pg_settings() -> dict[str, Any]:
    """Server version and the durability settings."""
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        out: dict[str, Any] = {"server_version": await conn.fetchval("SHOW server_version")}
        for name in ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers"):
            out[name] = await conn.fetchval(f"SHOW {name}")
        return out
    finally:
        await conn.close()


async def pg_commits(db_url: str, seconds: float) -> dict[str, Any]:
    """Committed single-row updates/s from one asyncpg connection (autocommit)."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("CREATE TABLE limits_t (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        await conn.execute("INSERT INTO limits_t VALUES (1, 0)")
        stmt = await conn.prepare("UPDATE limits_t SET v = v + 1 WHERE id = 1")
        count = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            await stmt.fetch()
            count += 1
        wall = time.perf_counter() - t0
        return {"tps": count / wall, "commits": count, "seconds": wall}
    finally:
        await conn.close()


def pgbench(dbname: str, clients: int, seconds: int) -> dict[str, Any]:
    """pgbench -n -c clients -T seconds on ``dbname``; tps without connection time."""
    exe = shutil.which("pgbench") or "/usr/bin/pgbench"
    threads = min(clients, 2)
    cmd = [exe, "-n", "-h", "127.0.0.1", "-U", "postgres", "-c", str(clients),
           "-j", str(threads), "-T", str(seconds), dbname]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", proc.stdout)
    if not match:
        match = re.search(r"tps = ([0-9.]+)", proc.stdout)
    return {
        "command": " ".join(cmd),
        "tps": float(match.group(1)) if match else None,
        "error": None if match else (proc.stderr or proc.stdout)[-800:],
    }


async def run(quick: bool) -> dict[str, Any]:
    """All limits; the scratch database is created and dropped here."""
    seconds = 2.0 if quick else 5.0
    pg_seconds = 3 if quick else 10
    out: dict[str, Any] = {"sqlite": sqlite_commits(seconds)}
    try:
        out["postgres_settings"] = await pg_settings()
    except Exception as exc:
        out["postgres_settings"] = {"error": repr(exc)}
        return out
    dbname = f"wfe_bench_limits_{new_tag()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await admin.close()
    try:
        db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{dbname}"
        out["postgres_update_loop"] = await pg_commits(db_url, seconds)
        exe = shutil.which("pgbench") or "/usr/bin/pgbench"
        if Path(exe).exists():  # noqa: ASYNC240
            init = [exe, "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-U", "postgres", dbname]
            proc = subprocess.run(  # noqa: ASYNC221 (nothing else runs meanwhile)
                init, capture_output=True, text=True, timeout=300, check=False
            )
            out["pgbench_init"] = " ".join(init) + ("" if proc.returncode == 0 else " (failed)")
            out["pgbench_c1"] = pgbench(dbname, 1, pg_seconds)
            out["pgbench_c16"] = pgbench(dbname, 16, pg_seconds)
        else:
            out["pgbench_c1"] = out["pgbench_c16"] = {"tps": None, "error": "no pgbench"}
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        finally:
            await admin.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.limits")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_out", default=None)
    args = p.parse_args()
    result = asyncio.run(run(args.quick))
    text = json.dumps(result, indent=1)
    if args.json_out:
        Path(args.json_out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
