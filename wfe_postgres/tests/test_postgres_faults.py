"""PostgreSQL restarted under running workers, and a real password check.

The tests run a PostgreSQL cluster of their own (initdb into a temporary folder, a free
port, password authentication), so stopping it disturbs no other test: the shared
server on 5432 keeps running. Needs the PostgreSQL server binaries, as on this
project's machines; without them the tests skip (and fail when CI is set).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from wfe_conformance.scenario_support import wait_until

from wfe_core import (
    HostOptions,
    ProviderUnavailable,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_postgres import PostgresPersistenceProvider

pytestmark = pytest.mark.anyio
BOUND = 30.0
PASSWORD = "wfe-fault-pw"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class PrivatePostgres:
    """A throwaway PostgreSQL cluster that can be stopped and started again."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        if initdb is None:
            _unavailable("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        assert initdb is not None
        self.bin = Path(initdb).parent
        self.root = Path(tempfile.mkdtemp(prefix="wfe-pg-fault-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD)
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=BOUND)

    def url(self, password: str = PASSWORD) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@dataclass
class Order:
    key: str = ""
    since: datetime | None = None
    paid: object = None


class WaitingOrder(Workflow[Order]):
    id = "pg-fault-order"
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(lambda context: None).wait_for(
            "paid", key=lambda d: d.key, effective_date=lambda d: d.since
        ).output(paid=lambda step: step.event_data)


class SleepingOrder(Workflow[Order]):
    id = "pg-fault-sleeper"
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(lambda context: None).delay(timedelta(seconds=1)).then(
            lambda context: None
        )


async def test_wrong_password_is_a_clear_error(private_pg: PrivatePostgres) -> None:
    """A password the server rejects is reported as such, without the password, fast."""
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as info:
        async with PostgresPersistenceProvider(private_pg.url("not-the-password")):
            pass
    assert time.monotonic() - started < 10
    assert "not-the-password" not in str(info.value)
    assert "password" in str(info.value).lower()


async def test_workers_ride_out_a_postgres_restart(private_pg: PrivatePostgres) -> None:
    """PostgreSQL restarted while a worker runs: it backs off, reconnects and goes on;
    sleeping workflows finish and events published afterwards are delivered."""
    host = WorkflowHost.from_url(
        private_pg.url(),
        options=HostOptions(poll_interval=0.1, idle_time=0.02, lock_ttl=5.0, stop_timeout=5.0),
    )
    host.register_workflow(WaitingOrder())
    host.register_workflow(SleepingOrder())
    keys = [f"k{n}" for n in range(10)]
    since = datetime.now(UTC)
    async with host:
        waiting = [await host.start_workflow(WaitingOrder.id, Order(k, since)) for k in keys]
        sleeping = [await host.start_workflow(SleepingOrder.id, Order()) for _ in range(10)]

        async def all_waiting() -> bool:
            for workflow_id in waiting:
                instance = await host.get_workflow_instance(workflow_id)
                if not any(p.event_name == "paid" for p in instance.execution_pointers):
                    return False
            return True

        await wait_until(all_waiting, BOUND, "every order to wait for its payment")
        await anyio.to_thread.run_sync(private_pg.stop)
        with pytest.raises(ProviderUnavailable):  # clients get a clear error meanwhile
            await host.publish_event("paid", keys[0], "too early")
        await anyio.sleep(1.5)  # the outage outlasts the sleepers' delay
        assert all(not task.done() for task in host._loops), "a host loop died"
        await anyio.to_thread.run_sync(private_pg.start)

        for key in keys:
            await host.publish_event("paid", key, f"paid:{key}")
        for workflow_id in sleeping:
            done = await host.wait_for_workflow(workflow_id, timeout=BOUND)
            assert done.status == WorkflowStatus.COMPLETE
        for workflow_id, key in zip(waiting, keys, strict=True):
            done = await host.wait_for_workflow(workflow_id, timeout=BOUND)
            assert done.status == WorkflowStatus.COMPLETE
            assert done.data.paid == f"paid:{key}"
        assert all(not task.done() for task in host._loops)
