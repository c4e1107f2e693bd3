"""The dashboard's routes through Starlette's TestClient, on a real SQLite store: the
list (filters, counts, search, keyset paging), the instance page, schedules, live
updates, actions with their confirmation and form secret, and the token rules."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from wfe_core.client import WorkflowClient
from wfe_core.models import (
    ExecutionError,
    ExecutionPointer,
    PointerList,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_dashboard.security import COOKIE, cookie_value
from wfe_dashboard_app import Approval, workflows

from wfe_dashboard import create_app

with warnings.catch_warnings():  # this Starlette would rather have httpx2 (not installed)
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")

T = TypeVar("T")
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LOCAL = "http://127.0.0.1"


def seed(url: str, work: Callable[[WorkflowClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client on ``url`` that knows the test app's types."""

    async def go() -> T:
        client = WorkflowClient.from_url(url)
        for w in workflows:
            client.register_workflow(w)
        async with client:
            return await work(client)

    return asyncio.run(go())


def make(
    definition: str = "orders",
    *,
    at: datetime = BASE,
    status: WorkflowStatus = WorkflowStatus.RUNNABLE,
    reference: str | None = None,
    key: str | None = None,
    pointers: list[ExecutionPointer] | None = None,
    data: Any = None,
) -> WorkflowInstance:
    """An instance to store directly (times chosen by the test)."""
    return WorkflowInstance(
        workflow_definition_id=definition,
        status=status,
        reference=reference,
        idempotency_key=key,
        create_time=at,
        data=data if data is not None else {"n": 1},
        execution_pointers=PointerList(pointers or [ExecutionPointer(step_id=0, step_name="a")]),
    )


def store(url: str, *instances: WorkflowInstance) -> list[str]:
    """Create ``instances``; return their ids."""

    async def go(client: WorkflowClient) -> list[str]:
        for inst in instances:
            await client.persistence.create_workflow(inst)
        return [i.id for i in instances]

    return seed(url, go)


@dataclass
class Site:
    """A running dashboard and its store."""

    url: str
    web: TestClient


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wfe.db'}"


@contextmanager
def open_site(url: str, **options: Any) -> Iterator[Site]:
    seed(url, lambda c: asyncio.sleep(0))  # create the schema
    app = create_app(WorkflowClient.from_url(url), **options)
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as web:
        yield Site(url, web)


@pytest.fixture
def site(store_url: str) -> Iterator[Site]:
    with open_site(store_url, page_size=3) as s:
        yield s


@pytest.fixture
def locked(store_url: str) -> Iterator[Site]:
    with open_site(store_url, token="s3cret token") as s:
        yield s


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form secret on the page"
    return found.group(1)


# ---------------------------------------------------------------------------- list


def test_list_shows_rows_counts_and_total(site: Site) -> None:
    ids = store(
        site.url,
        make(at=BASE),
        make(at=BASE + timedelta(seconds=1), status=WorkflowStatus.COMPLETE),
        make(at=BASE + timedelta(seconds=2), status=WorkflowStatus.SUSPENDED),
    )
    page = site.web.get("/")
    assert page.status_code == 200
    assert row_ids(page.text) == ids[::-1]  # newest first
    assert 'data-count="runnable">1<' in page.text
    assert 'data-count="complete">1<' in page.text
    assert 'data-count="terminated">0<' in page.text
    assert '<b id="total">3</b>' in page.text
    assert 'src="http://127.0.0.1/static/app.js"' in page.text  # served here, no CDN


def test_list_filters(site: Site) -> None:
    a, b, c, d = store(
        site.url,
        make("orders", at=BASE, reference="r-1", key="k-1"),
        make("orders", at=BASE + timedelta(hours=1), reference="r-2", key="k-2"),
        make("invoices", at=BASE + timedelta(hours=2), key="k-1", status=WorkflowStatus.COMPLETE),
        make("invoices", at=BASE + timedelta(hours=3), status=WorkflowStatus.TERMINATED),
    )
    get = site.web.get
    assert row_ids(get("/?status=complete").text) == [c]
    assert row_ids(get("/?definition=orders").text) == [b, a]
    assert row_ids(get("/?reference=r-2").text) == [b]
    assert row_ids(get("/?definition=orders&key=k-1").text) == [a]
    assert row_ids(get("/?definition=invoices&key=k-1").text) == [c]
    assert row_ids(get("/?from=2024-05-01T13:00&to=2024-05-01T15:00").text) == [c, b]
    assert row_ids(get("/?from=2024-05-01T14:00:00Z").text) == [d, c]
    # counts by status follow the other filters
    page = get("/?definition=invoices&status=complete")
    assert 'data-count="terminated">1<' in page.text
    assert '<b id="total">1</b>' in page.text


def test_list_filter_errors_are_explained(site: Site) -> None:
    store(site.url, make(key="k-1"))
    page = site.web.get("/?key=k-1")
    assert page.status_code == 200
    assert "choose a definition too" in page.text
    assert row_ids(page.text) == []
    assert "is not one of" in site.web.get("/?status=nope").text
    assert "is not a date and time" in site.web.get("/?from=yesterday").text
    assert "not a page position" in site.web.get("/?before=garbage").text


def test_search_by_id(site: Site) -> None:
    (wid,) = store(site.url, make())
    found = site.web.get(f"/?id={wid}")
    assert found.status_code == 303
    assert found.headers["location"].endswith(f"/instances/{wid}")
    missing = site.web.get("/?id=no-such-id")
    assert missing.status_code == 200
    assert "No workflow instance has the id" in missing.text


def test_keyset_paging_walks_every_row_once_with_ties(site: Site) -> None:
    tie = BASE + timedelta(minutes=5)
    instances = [make(at=BASE + timedelta(minutes=n)) for n in range(4)]
    instances += [make(at=tie) for _ in range(4)]  # four rows created at the same time
    instances += [make(at=BASE + timedelta(minutes=9))]
    store(site.url, *instances)
    expected = [i.id for i in sorted(instances, key=lambda i: (i.create_time, i.id), reverse=True)]
    seen: list[str] = []
    address = "/"
    pages = 0
    while address:
        page = site.web.get(address)
        assert page.status_code == 200
        ids = row_ids(page.text)
        assert 0 < len(ids) <= 3
        seen += ids
        found = re.search(r'href="http://127\.0\.0\.1/(\?[^"]*)" id="next-page"', page.text)
        address = "/" + found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert seen == expected
    assert pages == 3


def test_keyset_paging_keeps_the_filters(site: Site) -> None:
    mine = [make("a", at=BASE + timedelta(seconds=n)) for n in range(5)]
    store(site.url, *mine, *[make("b", at=BASE + timedelta(seconds=n)) for n in range(5)])
    first = site.web.get("/?definition=a")
    found = re.search(r'href="http://127\.0\.0\.1/(\?[^"]*)" id="next-page"', first.text)
    assert found
    second = site.web.get("/" + found.group(1).replace("&amp;", "&"))
    assert row_ids(first.text) + row_ids(second.text) == [i.id for i in mine[::-1]]
    assert 'id="next-page"' not in second.text
    assert 'id="first-page"' in second.text


# ---------------------------------------------------------------------------- instance


def _tree_instance() -> WorkflowInstance:
    """begin -> parallel(p1 -> p2 | q1) with an error on q1, waiting for an event."""
    begin = ExecutionPointer(step_id=0, step_name="begin", status=PointerStatus.COMPLETE)
    par = ExecutionPointer(step_id=1, step_name="fork", predecessor_id=begin.id)
    p1 = ExecutionPointer(step_id=2, step_name="p1", scope=[par.id], predecessor_id=par.id)
    q1 = ExecutionPointer(
        step_id=4, step_name="q1", scope=[par.id], predecessor_id=par.id, retry_count=2
    )
    p2 = ExecutionPointer(
        step_id=3,
        step_name="p2",
        scope=[par.id],
        predecessor_id=p1.id,
        status=PointerStatus.WAITING_FOR_EVENT,
        event_name="approve",
        event_key="K-9",
    )
    par.children = [p1.id, q1.id]
    return make("tree", pointers=[begin, par, p1, q1, p2], key="idem-9", reference="ref-9")


def test_instance_page_shows_header_tree_errors_and_events(site: Site) -> None:
    inst = _tree_instance()
    q1 = inst.execution_pointers[3]
    store(site.url, inst)

    async def errors(client: WorkflowClient) -> None:
        await client.persistence.persist_errors(
            [
                ExecutionError(
                    workflow_id=inst.id,
                    execution_pointer_id=q1.id,
                    message="boom",
                    error_type="builtins.ValueError",
                    traceback="Traceback (most recent call last):\nValueError: boom\n",
                )
            ]
        )

    seed(site.url, errors)
    page = site.web.get(f"/instances/{inst.id}")
    assert page.status_code == 200
    html = page.text
    for fact in ("tree", "idem-9", "ref-9", "runnable", "namespace", "default"):
        assert fact in html
    # p1 -> p2 is one path and q1 another, both inside the fork
    fork = html.index('data-step="fork"')
    paths = html[fork:]
    assert paths.index('data-step="p1"') < paths.index('data-step="p2"')
    assert paths.count('class="path"') == 2
    assert "2 retries" in html
    assert "ValueError: boom" in html
    assert "builtins.ValueError" in html
    assert "waits for <b>approve</b> key <code>K-9</code>" in html
    assert 'id="publish"' in html
    assert 'value="approve"' in html
    assert 'value="K-9"' in html


def test_instance_page_shows_undecodable_data_raw(site: Site) -> None:
    def start(client: WorkflowClient) -> Awaitable[str]:
        return client.start_workflow("approval", Approval(order="A-7", amount=Decimal("2.5")))

    wid = seed(site.url, start)
    # this process knows Approval: make the stored data name a type nobody registered
    with sqlite3.connect(site.url.removeprefix("sqlite:///")) as db:
        db.execute(
            "UPDATE wfe_workflows SET data = replace(data, 'wfe_dashboard_app.Approval', "
            "'elsewhere.Unknown') WHERE id = ?",
            (wid,),
        )
    html = site.web.get(f"/instances/{wid}").text
    assert "raw: type not registered here" in html
    assert "elsewhere.Unknown" in html  # the stored form, as stored
    assert "A-7" in html
    assert 'id="undecodable"' in html


def test_unknown_instance_is_404(site: Site) -> None:
    page = site.web.get("/instances/nope")
    assert page.status_code == 404
    assert "No workflow instance has the id" in page.text


def test_partial_returns_only_the_live_part(site: Site) -> None:
    (wid,) = store(site.url, make())
    part = site.web.get(f"/instances/{wid}", headers={"X-Partial": "1"})
    assert part.status_code == 200
    assert "<html" not in part.text
    assert 'id="timeline"' in part.text
    part = site.web.get("/", headers={"X-Partial": "1"})
    assert "<html" not in part.text
    assert 'id="instances"' in part.text


# ---------------------------------------------------------------------------- schedules


def test_schedules_page_lists_next_fire_times(site: Site) -> None:
    def create(client: WorkflowClient) -> Awaitable[Any]:
        return client.create_schedule("nightly-fanout", "fanout", {}, every=timedelta(hours=6))

    schedule = seed(site.url, create)
    page = site.web.get("/schedules")
    assert page.status_code == 200
    assert "nightly-fanout" in page.text
    assert "fanout" in page.text
    assert schedule.next_fire_time is not None
    assert schedule.next_fire_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in page.text
    empty_url = site.url.replace("wfe.db", "other.db")
    with open_site(empty_url) as empty:
        assert "No schedules." in empty.web.get("/schedules").text


# ---------------------------------------------------------------------------- live


def test_live_list_stream_reports_changes(site: Site) -> None:
    store(site.url, make(at=BASE))
    page = site.web.get("/?definition=orders")
    version = re.search(r'data-version="([^"]+)"', page.text)
    assert version
    same = site.web.get(f"/live/list?definition=orders&once=1&v={version.group(1)}")
    assert same.headers["content-type"].startswith("text/event-stream")
    assert "event: same" in same.text
    store(site.url, make(at=BASE + timedelta(seconds=1)))
    changed = site.web.get(f"/live/list?definition=orders&once=1&v={version.group(1)}")
    assert "event: change" in changed.text
    other = site.web.get(f"/live/list?definition=invoices&once=1&v={version.group(1)}")
    assert "event: change" in other.text  # another filter shows another page


def test_live_instance_stream_reports_changes(site: Site) -> None:
    (wid,) = store(site.url, make())
    html = site.web.get(f"/instances/{wid}").text
    version = re.search(r'data-version="([^"]+)"', html)
    assert version
    assert "event: same" in site.web.get(f"/live/instances/{wid}?once=1&v={version.group(1)}").text
    seed(site.url, lambda c: c.suspend_workflow(wid))
    changed = site.web.get(f"/live/instances/{wid}?once=1&v={version.group(1)}")
    assert "event: change" in changed.text
    assert "event: change" in site.web.get("/live/instances/gone?once=1&v=x").text


# ---------------------------------------------------------------------------- actions


def status_of(url: str, wid: str) -> WorkflowStatus:
    async def go(client: WorkflowClient) -> WorkflowStatus:
        return (await client.get_workflow_instance(wid)).status

    return seed(url, go)


def test_actions_need_the_form_secret_and_a_confirmation(site: Site) -> None:
    (wid,) = store(site.url, make())
    secret = csrf_of(site.web.get(f"/instances/{wid}").text)
    refused = site.web.post(f"/instances/{wid}/suspend", data={"confirmed": "1"})
    assert refused.status_code == 403
    refused = site.web.post(f"/instances/{wid}/suspend", data={"confirmed": "1", "csrf": "forged"})
    assert refused.status_code == 403
    ask = site.web.post(f"/instances/{wid}/suspend", data={"csrf": secret})
    assert ask.status_code == 200
    assert "Suspend workflow" in ask.text
    assert 'name="confirmed" value="1"' in ask.text
    assert secret in ask.text
    assert status_of(site.url, wid) is WorkflowStatus.RUNNABLE
    assert site.web.get(f"/instances/{wid}/suspend").status_code == 405


def test_suspend_resume_terminate(site: Site) -> None:
    (wid,) = store(site.url, make())
    secret = csrf_of(site.web.get(f"/instances/{wid}").text)
    form = {"csrf": secret, "confirmed": "1"}
    for action, status in (
        ("suspend", WorkflowStatus.SUSPENDED),
        ("resume", WorkflowStatus.RUNNABLE),
        ("terminate", WorkflowStatus.TERMINATED),
    ):
        done = site.web.post(f"/instances/{wid}/{action}", data=form)
        assert done.status_code == 303
        assert done.headers["location"].endswith(f"/instances/{wid}?done={action}")
        assert status_of(site.url, wid) is status
    again = site.web.post(f"/instances/{wid}/terminate", data=form)
    assert again.headers["location"].endswith("?failed=terminate")
    assert "had already ended" in site.web.get(again.headers["location"]).text
    assert site.web.post(f"/instances/{wid}/explode", data=form).status_code == 404
    assert site.web.post("/instances/nope/terminate", data=form).status_code == 404


def test_publish_event(site: Site) -> None:
    (wid,) = store(site.url, make())
    secret = csrf_of(site.web.get(f"/instances/{wid}").text)
    form = {"csrf": secret, "name": "approve", "key": "A-1", "data": '{"by": "alice"}'}
    ask = site.web.post(f"/instances/{wid}/publish", data=form)
    assert ask.status_code == 200
    assert "Publish event" in ask.text
    assert "alice" in ask.text  # the data travels through the confirmation page
    bad = site.web.post(f"/instances/{wid}/publish", data={**form, "data": "{nope"})
    assert bad.status_code == 400
    assert "not JSON" in bad.text
    nameless = site.web.post(f"/instances/{wid}/publish", data={**form, "name": " "})
    assert nameless.status_code == 400
    done = site.web.post(f"/instances/{wid}/publish", data={**form, "confirmed": "1"})
    assert done.status_code == 303
    event_id = done.headers["location"].split("event=")[1]

    async def event(client: WorkflowClient) -> Any:
        return await client.persistence.get_event(event_id)

    stored = seed(site.url, event)
    assert (stored.event_name, stored.event_key, stored.event_data) == (
        "approve",
        "A-1",
        {"by": "alice"},
    )
    assert f"Published event {event_id}" in site.web.get(done.headers["location"]).text


# ---------------------------------------------------------------------------- security


def test_responses_forbid_framing_and_foreign_scripts(site: Site) -> None:
    page = site.web.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert site.web.get("/static/app.css").status_code == 200


def test_without_a_token_only_loopback_hosts_are_served(site: Site) -> None:
    assert site.web.get("/", headers={"host": "localhost:8080"}).status_code == 200
    assert site.web.get("/", headers={"host": "[::1]:8080"}).status_code == 200
    rebound = site.web.get("/", headers={"host": "evil.example:8080"})
    assert rebound.status_code == 403
    assert site.web.get("/login").status_code == 303  # no token: nothing to sign in to


def test_token_is_required_everywhere(locked: Site) -> None:
    web = locked.web
    assert web.get("/").status_code == 401
    assert web.get("/schedules").status_code == 401
    assert web.get("/live/list?once=1").status_code == 401
    assert web.post("/instances/x/terminate", data={"confirmed": "1"}).status_code == 401
    browser = web.get("/schedules?a=1", headers={"accept": "text/html"})
    assert browser.status_code == 303
    assert browser.headers["location"] == "/login?next=%2Fschedules%3Fa%3D1"
    assert web.get("/login").status_code == 200
    assert web.get("/static/app.js").status_code == 200
    assert web.get("/?token=wrong").status_code == 401
    assert web.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert web.get("/", headers={"authorization": "Bearer s3cret token"}).status_code == 200
    assert web.get("/", headers={"host": "dashboard.example"}).status_code == 401


def test_login_form_sets_an_httponly_cookie(locked: Site) -> None:
    web = locked.web
    wrong = web.post("/login", data={"token": "nope", "next": "/schedules"})
    assert wrong.status_code == 401
    assert "not the token" in wrong.text
    ok = web.post("/login", data={"token": "s3cret token", "next": "/schedules"})
    assert ok.status_code == 303
    assert ok.headers["location"] == "/schedules"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "s3cret" not in cookie  # a digest, never the token itself
    assert web.get("/schedules").status_code == 200  # the client keeps the cookie
    offsite = web.post("/login", data={"token": "s3cret token", "next": "//evil.example/"})
    assert offsite.headers["location"] == "/"
    out = web.post("/logout")
    assert out.status_code == 303
    assert "Max-Age=0" in out.headers["set-cookie"]


def test_token_in_the_address_sets_the_cookie_once(locked: Site) -> None:
    web = locked.web
    (wid,) = store(locked.url, make())
    first = web.get(f"/instances/{wid}?token=s3cret%20token&x=1")
    assert first.status_code == 303
    assert first.headers["location"] == f"/instances/{wid}?x=1"
    assert f"{COOKIE}={cookie_value('s3cret token')}" in first.headers["set-cookie"]
    page = web.get(f"/instances/{wid}")
    assert page.status_code == 200
    form = {"csrf": csrf_of(page.text), "confirmed": "1"}
    assert web.post(f"/instances/{wid}/terminate", data=form).status_code == 303
    assert status_of(locked.url, wid) is WorkflowStatus.TERMINATED
