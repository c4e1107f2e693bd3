"""The dashboard in a real headless browser: Playwright driving Debian's Chromium
(``/usr/bin/chromium``, or ``WFE_CHROMIUM``) against ``wfe dashboard`` and ``wfe
worker`` subprocesses on one SQLite file.

It loads the list, filters it, opens an instance, publishes the event a waiting
workflow waits for from the page and watches the workflow resume, watches the list
update live, and terminates an instance through the confirmation. With
``WFE_SCREENSHOTS=<folder>`` it saves ``list.png``, ``instance.png``,
``instance-fanout.png`` and ``schedules.png`` there (the README's screenshots come from
``WFE_SCREENSHOTS=wfe_dashboard/docs/screenshots``).

When Chromium cannot start the test is skipped, except with ``CI`` set: then it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from wfe_core.client import SyncWorkflowClient, WorkflowClient
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_dashboard_app import Approval, workflows

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
CHROMIUM = os.environ.get("WFE_CHROMIUM", "/usr/bin/chromium")
TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wfe(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``wfe ARGS`` in this folder (so ``--app wfe_dashboard_app:...`` imports)."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "wfe_core.cli", *args],
            cwd=HERE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium, or a skip (a failure with ``CI`` set) when it cannot start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the dev group installs it
        if os.environ.get("CI"):
            pytest.fail(f"playwright is not installed: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")
    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Exception as exc:
            message = f"cannot start Chromium at {CHROMIUM} (apt-get install chromium): {exc}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[SyncWorkflowClient, str]]:
    """A worker and a dashboard on one SQLite store, and a client of it that knows
    the test app: (client, dashboard address). The client runs its own loop in a
    thread (Playwright's sync API holds this thread's)."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    client = WorkflowClient.connect_sync(url)  # creates the store first
    for w in workflows:
        client.register_workflow(w)
    worker = wfe(
        "--url", url, "worker", "--app", "wfe_dashboard_app:workflows", log=tmp_path / "worker.log"
    )
    port = free_port()
    board = wfe(
        "--url",
        url,
        "dashboard",
        "--port",
        str(port),
        "--poll-interval",
        "0.2",
        log=tmp_path / "dashboard.log",
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert board.poll() is None, (tmp_path / "dashboard.log").read_text()
        try:
            return httpx.get(base + "/login", timeout=1).status_code in (200, 303)
        except httpx.HTTPError:
            return False

    try:
        wait_until("the dashboard to answer", up)
        yield client, base
    finally:
        stop(board)
        stop(worker)
        client.close()


def test_dashboard_in_a_real_browser(
    browser: Any, services: tuple[SyncWorkflowClient, str]
) -> None:
    from playwright.sync_api import expect

    client, base = services
    shots = os.environ.get("WFE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)

    def shoot(page: Any, name: str) -> None:
        if shots:
            page.screenshot(path=str(Path(shots) / name), full_page=True)

    ids = {
        "fan": client.start_workflow(
            "fanout", {"items": ["apples", "pears"]}, idempotency_key="fan-1"
        ),
    }
    for order, amount in (("A-1", "12.50"), ("A-2", "99.00")):
        ids[order] = client.start_workflow(
            "approval", Approval(order=order, amount=Decimal(amount)), reference=f"order-{order}"
        )
    client.create_schedule("nightly-fanout", "fanout", {"items": []}, every=timedelta(hours=24))
    client.create_schedule("hourly-report", "fanout", {}, cron="0 * * * *")
    state = client.get_workflow_instance

    def waiting(wid: str) -> bool:
        return any(
            p.status is PointerStatus.WAITING_FOR_EVENT for p in state(wid).execution_pointers
        )

    wait_until("fanout to complete", lambda: state(ids["fan"]).status is WorkflowStatus.COMPLETE)
    wait_until("A-1 to wait for approval", lambda: waiting(ids["A-1"]))
    wait_until("A-2 to wait for approval", lambda: waiting(ids["A-2"]))

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(TIMEOUT * 1000)
    # -- the list, live
    page.goto(base + "/")
    rows = page.locator("#instances tbody tr[data-id]")
    expect(rows).to_have_count(3)
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator('[data-count="runnable"]')).to_have_text("2")
    expect(page.locator('[data-count="complete"]')).to_have_text("1")
    shoot(page, "list.png")

    # -- filter it
    page.select_option('select[name="status"]', "complete")
    page.click('#filters button[type="submit"]')
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ids["fan"])
    page.select_option('select[name="status"]', "")
    page.fill('input[name="definition"]', "approval")
    page.click('#filters button[type="submit"]')
    expect(rows).to_have_count(2)
    page.fill('input[name="reference"]', "order-A-1")
    page.click('#filters button[type="submit"]')
    expect(rows).to_have_count(1)
    page.goto(base + "/?definition=fanout&key=fan-1")
    expect(rows).to_have_count(1)
    page.goto(base + "/?key=fan-1")
    expect(page.locator(".error")).to_contain_text("choose a definition")

    # -- the list updates itself when an instance starts
    page.goto(base + "/?definition=fanout")
    expect(rows).to_have_count(1)
    expect(page.locator("#live-status")).to_have_text("live")
    client.start_workflow("fanout", {"items": ["plums"]})
    expect(rows).to_have_count(2)

    # -- the fanout instance: parallel paths, loop items, retries, errors
    page.goto(base + "/")
    page.click(f'a[href$="/instances/{ids["fan"]}"]')
    expect(page.locator("#status")).to_have_text("complete")
    expect(page.locator('[data-step="ship in parallel"] .path')).to_have_count(2)
    expect(page.locator('[data-step="each item"] .path')).to_have_count(2)
    warehouse = page.locator('[data-step="call warehouse"]')
    expect(warehouse.locator(".retries")).to_have_text("2 retries")
    expect(warehouse.locator(".error-item")).to_have_count(2)
    warehouse.locator(".error-item details summary").first.click()
    expect(warehouse.locator(".traceback").first).to_contain_text("the warehouse did not answer")
    expect(page.locator("#data pre")).to_contain_text('"apples"')
    shoot(page, "instance-fanout.png")

    # -- a waiting instance resumes when its event is published from the page
    page.goto(base + "/?reference=order-A-1")
    page.click(f'a[href$="/instances/{ids["A-1"]}"]')
    expect(page.locator("#status")).to_have_text("runnable")
    expect(page.locator('[data-step="wait for approval"] .waiting')).to_contain_text("approve")
    expect(page.locator("#data .raw-note")).to_contain_text("raw: type not registered here")
    expect(page.locator("#event-name")).to_have_value("approve")
    expect(page.locator("#event-key")).to_have_value("A-1")
    page.fill("#event-data", '{"by": "alice", "ok": true}')
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#publish-button")  # dismissed: nothing is published
    expect(page.locator(".notice")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#publish-button")
    expect(page.locator(".notice")).to_contain_text("Published event")
    expect(page.locator("#status")).to_have_text("complete")
    expect(page.locator('[data-step="finish"]')).to_have_attribute("data-status", "complete")
    expect(page.locator("#events")).to_contain_text('"alice"')
    shoot(page, "instance.png")
    assert state(ids["A-1"]).status is WorkflowStatus.COMPLETE

    # -- terminate one through the confirmation
    page.goto(base + f"/instances/{ids['A-2']}")
    expect(page.locator("#live-status")).to_have_text("live")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#terminate-button")
    expect(page.locator("#status")).to_have_text("runnable")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#terminate-button")
    expect(page.locator(".notice")).to_contain_text("Terminated")
    expect(page.locator("#status")).to_have_text("terminated")
    assert state(ids["A-2"]).status is WorkflowStatus.TERMINATED

    # -- schedules
    page.click('nav a[href$="/schedules"]')
    expect(page.locator("#schedules tbody tr[data-id]")).to_have_count(2)
    expect(page.locator('[data-id="nightly-fanout"] .next-fire')).to_contain_text("in ")
    shoot(page, "schedules.png")
    page.close()
