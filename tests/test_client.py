"""WorkflowClient: a client that runs nothing, beside workers that run the work.

In-process (a client and a host on one SQLite file, each with its own connections),
and across processes: the Starlette example app and the sync example against a real
``wfe worker`` subprocess.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.checkout import Checkout, CheckoutWorkflow
from wfe_core import (
    HostOptions,
    PointerStatus,
    SyncWorkflowClient,
    WorkflowClient,
    WorkflowHost,
    WorkflowNotRegistered,
    WorkflowStatus,
    WorkflowTerminated,
)

ROOT = Path(__file__).resolve().parent.parent
WFE = Path(sys.executable).with_name("wfe")
FAST = HostOptions(poll_interval=0.1, idle_time=0.05)


async def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _waiting(instance: Any) -> bool:
    return any(p.status is PointerStatus.WAITING_FOR_EVENT for p in instance.execution_pointers)


@pytest.mark.anyio
async def test_a_client_starts_and_a_host_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    async with WorkflowClient.from_url(url) as client:
        handle = await client.start_instance(CheckoutWorkflow, Checkout("C-1", 700))
        # the client ran nothing: the instance waits for a worker
        stored = await handle.instance()
        assert stored.status is WorkflowStatus.RUNNABLE
        assert stored.execution_pointers[0].start_time is None
        assert await client.count_workflows(definition_id="checkout") == 1

        worker = WorkflowHost.from_url(url, options=FAST)
        worker.register_workflow(CheckoutWorkflow())
        async with worker:
            await _until(lambda: _check_waiting(handle))
            await client.publish_event("payment", "C-1", 700)
            done = await handle.result(timeout=30)
            assert isinstance(done, Checkout)
            assert (done.status, done.paid_cents) == ("confirmed", 700)
            assert await handle.status() is WorkflowStatus.COMPLETE

            other = await client.start_instance(CheckoutWorkflow, Checkout("C-2", 100))
            await _until(lambda: _check_waiting(other))
            assert await other.terminate() is True
            with pytest.raises(WorkflowTerminated, match=other.id):
                await other.result(timeout=30)
            assert await other.errors() == []

        listed = await client.query_workflows(definition_id="checkout", newest_first=True)
        assert [w.id for w in listed] == [other.id, handle.id]
        assert client.get_handle(handle.id).id == handle.id


async def _check_waiting(handle: Any) -> bool:
    return _waiting(await handle.instance())


@pytest.mark.anyio
async def test_start_by_id_needs_the_definition_and_start_takes_only_workflows(
    tmp_path: Path,
) -> None:
    async with WorkflowClient.from_url(f"sqlite:///{tmp_path / 'x.db'}") as client:
        with pytest.raises(WorkflowNotRegistered, match="checkout"):
            await client.start_workflow("checkout")
        with pytest.raises(TypeError, match="start_instance takes a Workflow"):
            await client.start_instance(Checkout, Checkout())  # type: ignore[arg-type]
        handle = await client.start_instance(CheckoutWorkflow())
        assert (await handle.instance()).workflow_definition_id == "checkout"
        by_id = await client.start_instance("checkout", Checkout("X"))
        assert (await by_id.instance()).data.order_id == "X"


@pytest.mark.anyio
async def test_a_client_closes_only_what_it_opened(tmp_path: Path) -> None:
    """A client on provider objects leaves them open; one from a URL closes its store."""
    host = WorkflowHost.from_url(f"sqlite:///{tmp_path / 'y.db'}", options=FAST)
    host.register_workflow(CheckoutWorkflow())
    async with host:
        async with WorkflowClient(
            host.persistence, queue_provider=host.queue_provider, lock_provider=host.lock_provider
        ) as client:
            handle = await client.start_instance(CheckoutWorkflow, Checkout("Z-1", 5))
        # the host still works on its (not closed) store and runs what the client queued
        await host.publish_event("payment", "Z-1", 5)
        done = await host.wait_for_workflow(handle.id, 30)
        assert done.data.status == "confirmed"


# ---------------------------------------------------------------------- across processes
class _Worker:
    """``wfe worker --app examples.checkout:workflows`` on ``url``."""

    def __init__(self, url: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("WFE_URL", "WFE_APP")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [
                str(WFE),
                "worker",
                "--app",
                "examples.checkout:workflows",
                "--url",
                url,
                "--poll-interval",
                "0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.lines: list[str] = []
        self.started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "worker started" in line:
                self.started.set()

    def wait_started(self) -> None:
        assert self.started.wait(60), "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[str, _Worker]]:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    w = _Worker(url)
    try:
        w.wait_started()
        yield url, w
    finally:
        w.kill()


@pytest.mark.anyio
async def test_the_starlette_example_app(
    worker: tuple[str, _Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app, served in process through httpx's ASGI transport (with its lifespan:
    the client opened at start-up and closed at shutdown), against a real worker."""
    url, _ = worker
    monkeypatch.setenv("WFE_URL", url)
    from examples.web_app import app

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop") as http,
    ):
        started = await http.post("/checkouts", json={"order_id": "W-1", "amount_cents": 1250})
        assert started.status_code == 202
        wid = started.json()["workflow_id"]

        async def view() -> dict[str, Any]:
            response = await http.get(f"/checkouts/{wid}")
            assert response.status_code == 200, response.text
            return dict(response.json())

        async def awaiting() -> bool:
            return bool((await view())["checkout"] == "awaiting payment")

        await _until(awaiting, 60)
        paid = await http.post("/checkouts/W-1/payment", json={"cents": 1250})
        assert paid.status_code == 202

        async def complete() -> dict[str, Any] | None:
            doc = await view()
            return doc if doc["status"] == "complete" else None

        done = await _until(complete, 60)
        assert done == {
            "status": "complete",
            "order_id": "W-1",
            "paid_cents": 1250,
            "checkout": "confirmed",
        }
        assert (await http.get("/checkouts/no-such-id")).status_code == 404


def test_the_sync_example_and_many_threads(worker: tuple[str, _Worker]) -> None:
    url, _ = worker
    from examples.sync_client import checkout_and_pay

    done = checkout_and_pay(url, "S-1", 1250)
    assert (done.order_id, done.status, done.paid_cents) == ("S-1", "confirmed", 1250)

    with WorkflowClient.connect_sync(url) as client:
        assert isinstance(client, SyncWorkflowClient)

        def one(i: int) -> Checkout:
            handle = client.start_instance(CheckoutWorkflow, Checkout(f"T-{i}", i))
            client.publish_event("payment", f"T-{i}", i)
            return handle.result(timeout=60)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(1, 9)))
        assert [(r.order_id, r.paid_cents, r.status) for r in results] == [
            (f"T-{i}", i, "confirmed") for i in range(1, 9)
        ]
        assert client.count_workflows(definition_id="checkout") == 9
        handle = client.start_instance(CheckoutWorkflow, Checkout("T-x", 1))
        assert handle.terminate() is True
        assert handle.status() is WorkflowStatus.TERMINATED
        with pytest.raises(WorkflowTerminated):
            handle.result(timeout=30)
    with pytest.raises(RuntimeError, match="closed"):
        client.publish_event("payment", "late")
