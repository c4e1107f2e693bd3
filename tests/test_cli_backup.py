"""SQLite in production from the command line: ``wfe backup`` taken under load from a
store real ``wfe worker`` processes are running, restored and resumed; its refusals; and
``wfe worker --purge-after`` (retention).

Every test works in its own ``tmp_path`` (SQLite files, the application module) and
waits on conditions with bounded timeouts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli
from wfe_core.client import WorkflowClient
from wfe_core.models import WorkflowInstance, WorkflowStatus
from worker_process import WFE, WorkerProcess, clean_env

from wfe_sqlite import SqlitePersistenceProvider

_WORKER_FLAGS = ["--json", "--no-steps"]
"""Every worker of these tests writes JSON lines and no step progress."""

APP = """
    from datetime import datetime, timezone
    from typing import Any

    from wfe_core import StepContext, Workflow, WorkflowBuilder


    async def first(context: StepContext[dict[str, Any]]) -> None:
        context.data.setdefault("log", []).append("first")


    async def last(context: StepContext[dict[str, Any]]) -> None:
        context.data.setdefault("log", []).append("last")


    class Waiter(Workflow[dict[str, Any]]):
        id = "waiter"

        def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
            builder.start_with(first).wait_for(
                "go",
                key=lambda d: d["key"],
                effective_date=datetime(2000, 1, 1, tzinfo=timezone.utc),
            ).then(last)


    class Quick(Workflow[dict[str, Any]]):
        id = "quick"

        def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
            builder.start_with(first).then(last)


    workflows = [Waiter(), Quick()]
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_URL", raising=False)
    monkeypatch.delenv("WFE_APP", raising=False)


def wfe(*args: str) -> Result:
    """Run ``wfe ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def make_app(tmp_path: Path) -> str:
    name = f"wfe_backup_app_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    return f"{name}:workflows"


def app_workflows(tmp_path: Path, spec: str) -> list[Any]:
    """The workflows of the application module ``spec`` (to register on a client)."""
    name = spec.split(":")[0]
    loaded = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    assert loaded is not None
    assert loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return list(module.workflows)


def open_client(url: str, tmp_path: Path, spec: str) -> WorkflowClient:
    client = WorkflowClient.from_url(url)
    for workflow in app_workflows(tmp_path, spec):
        client.register_workflow(workflow)
    return client


async def _wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------ under load


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backup_under_load_restores_and_resumes(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """A backup taken while a worker runs and a client starts and publishes; restored
    under a new name and served by a new worker, every instance in it completes, each
    step having run once. (Instances the first worker held when the copy was taken wait
    for its copied lock lease, 30 s, to expire: the bounded wait allows for that.)"""
    app = make_app(tmp_path)
    live = tmp_path / "live.db"
    url = f"sqlite:///{live}"
    source = WorkerProcess(
        [*_WORKER_FLAGS, "--app", app, "--url", url, "--poll-interval", "0.1"], tmp_path
    )
    workers.append(source)
    source.wait_for_line('"worker_started"')

    counter = iter(range(1_000_000))
    async with open_client(url, tmp_path, app) as client:

        async def start_some(waiters: int, quick: int) -> None:
            for _ in range(waiters):
                await client.start_workflow("waiter", {"key": f"k{next(counter)}"})
            for _ in range(quick):
                await client.start_workflow("quick", {"key": f"q{next(counter)}"})

        await start_some(40, 20)
        for n in range(0, 40, 4):  # some of the first waiters get their event at once
            await client.publish_event("go", f"k{n}")

        stop_load = asyncio.Event()

        async def load() -> None:
            published = 40
            while not stop_load.is_set():
                await start_some(3, 2)
                await client.publish_event("go", f"k{published}")
                published += 5
                await asyncio.sleep(0.01)

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.3)  # the load is under way (and keeps going below)
        dest = tmp_path / "backup.db"
        proc = await asyncio.create_subprocess_exec(
            str(WFE), "backup", str(dest), "--url", url, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path, env=clean_env(),
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        stop_load.set()
        await asyncio.wait_for(loader, 30)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out)
        started_total = next(counter)

    assert report["dest"] == str(dest)
    assert report["integrity"] == "ok"
    assert report["size"] == dest.stat().st_size
    assert source.stop()[0] == 0

    # restore: the copy in place of a database file, a worker on it
    restored = tmp_path / "restored.db"
    restored.write_bytes(dest.read_bytes())
    conn = sqlite3.connect(restored)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM wfe_workflows")]
    finally:
        conn.close()
    assert len(ids) == report["instances"]
    assert 60 < len(ids) <= started_total  # taken while the load was starting more
    restored_url = f"sqlite:///{restored}"
    worker = WorkerProcess(
        [*_WORKER_FLAGS, "--app", app, "--url", restored_url, "--poll-interval", "0.1"], tmp_path
    )
    workers.append(worker)
    worker.wait_for_line('"worker_started"')

    async with open_client(restored_url, tmp_path, app) as client:
        instances = [await client.get_workflow_instance(i) for i in ids]
        for inst in instances:
            if inst.workflow_definition_id == "waiter" and inst.status is WorkflowStatus.RUNNABLE:
                await client.publish_event("go", inst.data["key"])

        async def all_complete() -> bool:
            found = [await client.get_workflow_instance(i) for i in ids]
            return all(w.status is WorkflowStatus.COMPLETE for w in found)

        await _wait_until(all_complete, 90, f"the {len(ids)} restored instances to complete")
        for i in ids:
            done = await client.get_workflow_instance(i)
            # every step ran exactly once: nothing lost, nothing run twice
            assert done.data["log"] == ["first", "last"], (i, done.data)
    assert worker.stop()[0] == 0


# ---------------------------------------------------------------------------- refusals


def _small_store(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


def test_backup_json_and_text_output(tmp_path: Path) -> None:
    async def make() -> None:
        async with SqlitePersistenceProvider(tmp_path / "s.db") as store:
            for _ in range(3):
                await store.create_workflow(WorkflowInstance(workflow_definition_id="x"))

    asyncio.run(make())
    result = wfe("--url", "sqlite:///s.db", "backup", "copy.db", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["instances"] == 3
    assert doc["integrity"] == "ok"
    assert doc["dest"] == str(tmp_path / "copy.db")
    assert doc["source"] == str(tmp_path / "s.db")
    assert doc["size"] == (tmp_path / "copy.db").stat().st_size
    result = wfe("backup", "copy2.db", "--url", "sqlite:///s.db")
    assert result.exit_code == 0, result.output
    assert "3 instances, integrity ok" in result.stdout


def test_backup_refuses_an_existing_dest_without_force(tmp_path: Path) -> None:
    _small_store(tmp_path / "s.db")
    (tmp_path / "d.db").write_text("precious")
    result = wfe("backup", "d.db", "--url", "sqlite:///s.db")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert "--force" in result.stderr
    assert (tmp_path / "d.db").read_text() == "precious"
    result = wfe("backup", "d.db", "--url", "sqlite:///s.db", "--force")
    assert result.exit_code == 0, result.output
    assert "no wfe store" in result.stdout
    assert (tmp_path / "d.db").read_bytes().startswith(b"SQLite format 3")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "SQLite stores only"),
        ("redis://127.0.0.1:6379/0", "SQLite stores only"),
        ("memory://", "SQLite stores only"),
    ],
)
def test_backup_refuses_other_stores(tmp_path: Path, url: str, message: str) -> None:
    result = wfe("backup", "d.db", "--url", url)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "--url" in result.stderr
    if url.startswith("postgresql"):
        assert "pg_dump" in result.stderr
    assert not (tmp_path / "d.db").exists()


def test_backup_refuses_a_missing_source_and_a_missing_folder(tmp_path: Path) -> None:
    result = wfe("backup", "d.db", "--url", "sqlite:///missing.db")
    assert result.exit_code == 1
    assert "missing.db: it does not exist" in result.stderr
    assert not (tmp_path / "missing.db").exists()  # nothing was created
    _small_store(tmp_path / "s.db")
    result = wfe("backup", "no/such/dir/d.db", "--url", "sqlite:///s.db")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert "mkdir -p" in result.stderr
    result = wfe("backup", "d.db", "--url", "sqlite:///:memory:")
    assert result.exit_code == 1
    assert "in-memory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


def test_backup_help_is_listed() -> None:
    result = wfe("--help")
    assert "backup" in result.stdout
    result = wfe("backup", "--help")
    assert "--force" in result.stdout
    assert "pg_dump" in result.stdout


# --------------------------------------------------------------------------- retention


def test_worker_purge_after_deletes_old_finished_instances(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    app = make_app(tmp_path)
    db = tmp_path / "ret.db"
    long_ago = datetime.now(UTC) - timedelta(days=40)
    recently = datetime.now(UTC) - timedelta(hours=1)

    async def seed() -> dict[str, str]:
        async with SqlitePersistenceProvider(db) as store:
            ids = {}
            for name, status, ended in [
                ("old_complete", WorkflowStatus.COMPLETE, long_ago),
                ("old_terminated", WorkflowStatus.TERMINATED, long_ago),
                ("recent_complete", WorkflowStatus.COMPLETE, recently),
                ("old_running", WorkflowStatus.SUSPENDED, None),
            ]:
                inst = WorkflowInstance(
                    workflow_definition_id="quick",
                    data={"key": name},
                    status=status,
                    create_time=long_ago,
                    complete_time=ended,
                )
                ids[name] = await store.create_workflow(inst)
            return ids

    ids = asyncio.run(seed())
    worker = WorkerProcess(
        [*_WORKER_FLAGS, "--app", app, "--url", f"sqlite:///{db}", "--purge-after", "30d",
         "--purge-status", "complete, terminated"],
        tmp_path,
    )  # fmt: skip
    workers.append(worker)
    worker.wait_for_line('"worker_started"')
    complete = json.loads(worker.wait_for_line('"status": "complete"'))
    terminated = json.loads(worker.wait_for_line('"status": "terminated"'))
    assert complete["event"] == terminated["event"] == "workflows_purged"
    assert complete["purged"] == 1
    assert terminated["purged"] == 1
    assert worker.stop()[0] == 0

    conn = sqlite3.connect(db)
    try:
        left = {row[0] for row in conn.execute("SELECT id FROM wfe_workflows")}
    finally:
        conn.close()
    assert left == {ids["recent_complete"], ids["old_running"]}


def test_worker_purges_again_every_interval(tmp_path: Path, workers: list[WorkerProcess]) -> None:
    """With --purge-every 1s the worker purges again: an instance finished after the
    first round (a quick workflow) is gone by a later one."""
    app = make_app(tmp_path)
    url = f"sqlite:///{tmp_path / 'again.db'}"
    worker = WorkerProcess(
        [*_WORKER_FLAGS, "--app", app, "--url", url, "--purge-after", "1s", "--purge-every", "1s",
         "--purge-status", "complete", "--poll-interval", "0.1"],
        tmp_path,
    )  # fmt: skip
    workers.append(worker)
    worker.wait_for_line('"worker_started"')
    worker.wait_for_line('"workflows_purged"')  # the first round, at start

    async def go() -> None:
        async with open_client(url, tmp_path, app) as client:
            wid = await client.start_workflow("quick", {"key": "x"})
            parked = await client.start_workflow("waiter", {"key": "never"})

            async def gone() -> bool:
                found = await client.persistence.query_workflows(definition_id="quick")
                return not found

            await _wait_until(gone, 30, f"{wid} to be purged")
            assert (await client.get_workflow_instance(parked)).status is WorkflowStatus.RUNNABLE

    asyncio.run(go())
    purged = json.loads(worker.wait_for_line('"purged": 1'))
    assert purged["event"] == "workflows_purged"
    assert purged["status"] == "complete"
    assert worker.stop()[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--purge-after", "soon"], "--purge-after"),
        (["--purge-after", "1d", "--purge-status", "runnable"], "finished statuses"),
        (["--purge-after", "1d", "--purge-every", "0s"], "--purge-every"),
    ],
)
def test_worker_retention_option_errors(args: list[str], message: str) -> None:
    result = wfe("worker", "--app", "wfe_core.demo:workflows", "--url", "memory://", *args)
    assert result.exit_code == 2
    assert message in result.stderr
