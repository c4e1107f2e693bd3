"""The ``wfe`` command line: every command, its ``--json`` output, and bad input.

Commands run in process through click's CliRunner; ``wfe worker`` also runs as a real
subprocess to check signal handling. Every test uses its own store (a SQLite file in
``tmp_path``, or an in-process memory store shared by the invocations of one test)
and runs inside ``tmp_path``, so nothing touches ``./wfe.db`` of the repository.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import wfe_core.registry
from click.testing import CliRunner, Result
from wfe_core.cli import cli, coerce, jsonable, parse_duration
from wfe_core.demo import OrderData
from wfe_core.registry import StoreComponents
from worker_process import BLOCKING_APP, WorkerProcess

from wfe_core import (
    Capability,
    ErrorBehavior,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

APP = "wfe_core.demo:workflows"


class _KeptMemoryProvider(MemoryPersistenceProvider):
    """A memory store that outlives the CLI invocations of one test (close keeps data)."""

    async def close(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_URL", raising=False)
    monkeypatch.delenv("WFE_APP", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # tables get their non-terminal width
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store URL shared by every invocation in one test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    shared = _KeptMemoryProvider()
    real_open = wfe_core.registry.open_store

    def open_store(url: str, **options: Any) -> StoreComponents:
        if url == "memory://cli-test":
            return StoreComponents(persistence=shared)
        return real_open(url, **options)

    monkeypatch.setattr(wfe_core.registry, "open_store", open_store)
    return "memory://cli-test"


def wfe(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run ``wfe ARGS`` in process."""
    runner = CliRunner()
    return runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def make_app(tmp_path: Path, source: str, attr: str = "workflows") -> str:
    """Write an application module into ``tmp_path`` and return its ``--app`` spec."""
    name = f"wfe_test_app_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return f"{name}:{attr}"


TYPED_APP = """
    from dataclasses import dataclass, field
    from datetime import datetime, timedelta
    from decimal import Decimal
    from enum import Enum

    from wfe_core import Workflow


    class Color(Enum):
        RED = "red"
        BLUE = "blue"


    @dataclass
    class Item:
        sku: str
        price: Decimal


    @dataclass
    class Data:
        name: str = ""
        items: list[Item] = field(default_factory=list)
        due: datetime | None = None
        wait: timedelta = timedelta(0)
        color: Color = Color.RED
        tags: dict[str, int] = field(default_factory=dict)


    def shout(context):
        context.data.name = context.data.name.upper()


    class Typed(Workflow[Data]):
        id = "typed"
        data_type = Data

        def build(self, builder):
            builder.start_with(shout)


    class TypedV2(Typed):
        version = 2


    workflows = [Typed(), TypedV2()]
    single = Typed()
    klass = Typed


    def factory():
        return [Typed()]


    async def async_factory():
        return Typed()


    def register(host):
        host.register_workflow(Typed())


    async def async_register(host):
        host.register_workflow(Typed())


    def bad_factory():
        return 42


    def two_args(a, b):
        return None


    def none_registered(host):
        return None


    def broken(host):
        raise RuntimeError("boom")


    number = 7
    mixed = [Typed(), 3]
"""


# --------------------------------------------------------------------------------------
# help and plumbing
# --------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = wfe("--help")
    assert result.exit_code == 0
    for command in (
        "worker",
        "start",
        "publish",
        "show",
        "list",
        "suspend",
        "resume",
        "terminate",
        "purge",
        "demo",
    ):
        assert command in result.stdout


def test_version() -> None:
    result = wfe("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("wfe, version ")


def test_main_entry_point_exits_with_status(monkeypatch: pytest.MonkeyPatch) -> None:
    from wfe_core.cli import main

    with pytest.raises(SystemExit) as info:
        main(["list", "--url", "nosuch://x"])
    assert info.value.code == 2


# --------------------------------------------------------------------------------------
# start / show / list / publish / control / purge on a shared store
# --------------------------------------------------------------------------------------


def test_start_prints_the_id_and_show_reports_it(url: str) -> None:
    result = wfe(
        "start",
        "order",
        "--app",
        APP,
        "--url",
        url,
        "--data",
        '{"order_id": "A-1", "amount": "12.50"}',
        "--reference",
        "A-1",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("started order v1: ")
    wid = result.stdout.strip().rsplit(" ", 1)[-1]
    shown = wfe("show", wid, "--url", url, "--app", APP)
    assert shown.exit_code == 0, shown.stderr
    assert wid in shown.stdout
    assert "order v1" in shown.stdout
    assert "runnable" in shown.stdout
    assert "A-1" in shown.stdout
    assert "execution pointers" in shown.stdout
    assert "receive order" in shown.stdout
    assert "errors: none" in shown.stdout


def test_start_json_and_show_json_shape(url: str) -> None:
    started = ok_json(
        "start",
        "order",
        "--app",
        APP,
        "--url",
        url,
        "--data",
        '{"order_id": "A-2", "amount": "7.25", "payment_window": "90m"}',
    )
    assert set(started) == {"id", "definition", "version", "reference", "status"}
    assert started["definition"] == "order"
    assert started["version"] == 1
    assert started["status"] == "runnable"
    shown = ok_json("show", started["id"], "--url", url, "--app", APP)
    assert set(shown) >= {
        "id",
        "definition",
        "version",
        "status",
        "reference",
        "create_time",
        "complete_time",
        "next_execution",
        "revision",
        "data",
        "pointers",
        "errors",
    }
    assert shown["id"] == started["id"]
    assert shown["status"] == "runnable"
    assert shown["data"]["order_id"] == "A-2"
    assert shown["data"]["amount"] == "7.25"
    assert shown["data"]["payment_window"] == 5400.0
    assert shown["errors"] == []
    (pointer,) = shown["pointers"]
    assert set(pointer) >= {
        "id",
        "step_id",
        "step_name",
        "status",
        "active",
        "start_time",
        "end_time",
        "sleep_until",
        "event_name",
        "event_key",
        "event_published",
        "retry_count",
        "outcome",
    }
    assert pointer["step_name"] == "receive order"
    assert pointer["status"] == "pending"
    datetime.fromisoformat(shown["create_time"])


def test_start_without_data_builds_the_default(url: str) -> None:
    started = ok_json("start", "order", "--app", APP, "--url", url)
    shown = ok_json("show", started["id"], "--url", url, "--app", APP)
    assert shown["data"]["order_id"] == ""
    assert shown["data"]["status"] == "new"


def test_start_builds_typed_data(url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, TYPED_APP)
    data = {
        "name": "x",
        "items": [{"sku": "a", "price": "1.10"}, {"sku": "b", "price": 2}],
        "due": "2024-01-01T10:00:00+00:00",
        "wait": "1h30m",
        "color": "blue",
        "tags": {"a": 1},
    }
    started = ok_json(
        "start", "typed", "--app", app, "--url", url, "--version", "1", "--data", json.dumps(data)
    )
    assert started["version"] == 1
    shown = ok_json("show", started["id"], "--url", url, "--app", app)
    assert shown["data"] == {
        "name": "x",
        "items": [{"sku": "a", "price": "1.10"}, {"sku": "b", "price": "2"}],
        "due": "2024-01-01T10:00:00+00:00",
        "wait": 5400.0,
        "color": "blue",
        "tags": {"a": 1},
    }
    newest = ok_json("start", "typed", "--app", app, "--url", url)
    assert newest["version"] == 2


def test_data_from_a_file_and_from_stdin(url: str, tmp_path: Path) -> None:
    (tmp_path / "order.json").write_text('{"order_id": "F-1"}')
    started = ok_json("start", "order", "--app", APP, "--url", url, "--data", "@order.json")
    assert ok_json("show", started["id"], "--url", url, "--app", APP)["data"]["order_id"] == "F-1"
    result = wfe(
        "start",
        "order",
        "--app",
        APP,
        "--url",
        url,
        "--data",
        "-",
        "--json",
        input='{"order_id": "S-1"}',
    )
    assert result.exit_code == 0, result.stderr
    wid = json.loads(result.stdout)["id"]
    assert ok_json("show", wid, "--url", url, "--app", APP)["data"]["order_id"] == "S-1"


def test_app_from_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_APP", APP)
    started = ok_json("start", "order", "--url", url)
    assert started["definition"] == "order"


def test_url_from_environment_and_group_option(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started = ok_json("start", "order", "--app", APP, "--url", url)
    monkeypatch.setenv("WFE_URL", url)
    assert ok_json("show", started["id"], "--app", APP)["id"] == started["id"]
    monkeypatch.setenv("WFE_URL", "nosuch://elsewhere")
    result = wfe("--url", url, "show", started["id"], "--app", APP, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["id"] == started["id"]


def test_list_filters_and_pages(url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, TYPED_APP)
    ids = [
        ok_json("start", "order", "--app", APP, "--url", url, "--reference", f"R-{i}")["id"]
        for i in range(3)
    ]
    typed = ok_json("start", "typed", "--app", app, "--url", url)["id"]
    listed = ok_json("list", "--url", url, "--app", app)
    assert set(listed) == {"workflows", "skip", "take", "count", "more", "total"}
    assert [w["id"] for w in listed["workflows"]] == [typed, *reversed(ids)]
    assert listed["more"] is False
    first = listed["workflows"][0]
    assert set(first) >= {
        "id",
        "definition",
        "version",
        "status",
        "reference",
        "create_time",
        "complete_time",
    }
    assert "data" not in first
    page = ok_json("list", "--url", url, "--app", app, "--take", "2")
    assert [w["id"] for w in page["workflows"]] == [typed, ids[2]]
    assert page["more"] is True
    assert page["count"] == 2
    page2 = ok_json("list", "--url", url, "--app", app, "--take", "2", "--skip", "2")
    assert [w["id"] for w in page2["workflows"]] == [ids[1], ids[0]]
    assert page2["more"] is False
    only_typed = ok_json("list", "--url", url, "--app", app, "--definition", "typed")
    assert [w["id"] for w in only_typed["workflows"]] == [typed]
    by_ref = ok_json("list", "--url", url, "--app", app, "--reference", "R-1")
    assert [w["id"] for w in by_ref["workflows"]] == [ids[1]]
    none_done = ok_json("list", "--url", url, "--app", app, "--status", "complete")
    assert none_done["workflows"] == []
    runnable = ok_json("list", "--url", url, "--app", app, "--status", "RUNNABLE")
    assert len(runnable["workflows"]) == 4


def test_list_table(url: str) -> None:
    wid = ok_json("start", "order", "--app", APP, "--url", url, "--reference", "T-1")["id"]
    ok_json("start", "order", "--app", APP, "--url", url)
    result = wfe("list", "--url", url, "--app", APP, "--take", "1", "--oldest-first")
    assert result.exit_code == 0, result.stderr
    assert wid in result.stdout
    assert "runnable" in result.stdout
    assert "more: wfe list --skip 1 --take 1" in result.stdout
    empty = wfe("list", "--url", url, "--app", APP, "--status", "suspended")
    assert empty.exit_code == 0
    assert "no workflows match" in empty.stdout


def test_suspend_resume_terminate(url: str) -> None:
    wid = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    suspended = ok_json("suspend", wid, "--url", url)
    assert suspended == {
        "id": wid,
        "action": "suspend",
        "changed": True,
        "status": "suspended",
        "pending": None,  # applied here: no request left for a worker
    }
    again = wfe("suspend", wid, "--url", url)
    assert again.exit_code == 1
    assert "was not suspended: it is suspended" in again.stderr
    resumed = wfe("resume", wid, "--url", url)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"workflow {wid} resumed (status: runnable)" in resumed.stdout
    terminated = ok_json("terminate", wid, "--url", url)
    assert terminated["changed"] is True
    assert terminated["status"] == "terminated"
    shown = ok_json("show", wid, "--url", url, "--app", APP)
    assert shown["status"] == "terminated"
    assert shown["complete_time"] is not None
    assert all(p["status"] == "cancelled" for p in shown["pointers"])
    late = wfe("terminate", wid, "--url", url, "--json")
    assert late.exit_code == 1
    assert json.loads(late.stdout)["changed"] is False
    assert "only an unfinished one can be terminated" in late.stderr


def test_publish_json_shape(url: str) -> None:
    published = ok_json("publish", "payment", "A-1", "--url", url, "--data", '{"amount": "5"}')
    assert set(published) == {"id", "name", "key", "effective_date", "data"}
    assert published["name"] == "payment"
    assert published["key"] == "A-1"
    assert published["data"] == {"amount": "5"}
    assert published["effective_date"] is None
    dated = ok_json(
        "publish", "payment", "A-2", "--url", url, "--effective-date", "2030-01-01T12:00:00"
    )
    assert dated["effective_date"] == "2030-01-01T12:00:00+00:00"
    human = wfe("publish", "payment", "A-3", "--url", url)
    assert human.exit_code == 0
    assert human.stdout.startswith("published payment 'A-3': ")


class Failing(Workflow[dict[str, Any]]):
    """One step that raises, terminating the workflow."""

    id = "failing"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        def explode(context: StepContext[dict[str, Any]]) -> None:
            raise ValueError("the warehouse is on fire")

        builder.start_with(explode).name("explode").on_error(ErrorBehavior.TERMINATE)


async def _run_failing(url: str) -> str:
    host = WorkflowHost.from_url(url)
    host.register_workflow(Failing())
    async with host:
        instance = await host.run_workflow("failing", {"n": 1}, timeout=10)
    assert instance.status is WorkflowStatus.TERMINATED
    return instance.id


def test_show_lists_errors_with_type_and_message(url: str) -> None:
    wid = asyncio.run(_run_failing(url))
    shown = ok_json("show", wid, "--url", url)
    assert shown["status"] == "terminated"
    assert shown["data"] == {"n": 1}
    assert shown["errors"], shown
    error = shown["errors"][0]
    assert set(error) == {"id", "time", "pointer_id", "type", "message", "traceback"}
    assert "ValueError" in (error["type"] or "")
    assert "the warehouse is on fire" in error["message"]
    table = wfe("show", wid, "--url", url)
    assert table.exit_code == 0
    assert "the warehouse is on fire" in table.stdout
    assert "ValueError" in table.stdout


def test_purge_finished_workflows(url: str) -> None:
    keep = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    gone = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    ok_json("terminate", gone, "--url", url)
    recent = ok_json("purge", "--status", "terminated", "--older-than", "1h", "--url", url)
    assert recent["purged"] == 0
    assert recent["status"] == "terminated"
    datetime.fromisoformat(recent["older_than"])
    time.sleep(0.01)  # let complete_time fall before "now - 0s"
    purged = wfe("purge", "--status", "terminated", "--older-than", "0s", "--url", url)
    assert purged.exit_code == 0, purged.stderr
    assert purged.stdout.startswith("purged 1 terminated workflow that ended before ")
    missing = wfe("show", gone, "--url", url)
    assert missing.exit_code == 1
    assert ok_json("show", keep, "--url", url, "--app", APP)["status"] == "runnable"


def test_purge_without_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryPersistenceProvider(capabilities=[Capability.SCHEDULED_COMMANDS])
    monkeypatch.setattr(
        wfe_core.registry, "open_store", lambda url, **kw: StoreComponents(persistence=store)
    )
    result = wfe("purge", "--status", "complete", "--older-than", "7d", "--url", "memory://")
    assert result.exit_code == 1
    assert "does not support purging" in result.stderr
    assert "PURGE" in result.stderr


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------

BAD_URL_COMMANDS = [
    ["list"],
    ["show", "some-id"],
    ["start", "order", "--app", APP],
    ["publish", "payment", "k"],
    ["suspend", "some-id"],
    ["purge", "--status", "complete", "--older-than", "1d"],
    ["worker", "--app", APP],
    ["demo"],
]


@pytest.mark.parametrize("args", BAD_URL_COMMANDS, ids=lambda a: a[0])
def test_unknown_url_scheme(args: list[str], tmp_path: Path) -> None:
    result = wfe(*args, "--url", "nosuch://somewhere")
    assert result.exit_code == 2
    assert "Invalid value for --url" in result.stderr
    assert "no wfe provider is installed for URL scheme 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_url_without_scheme() -> None:
    result = wfe("list", "--url", "just-a-path.db")
    assert result.exit_code == 2
    assert "is not a store URL" in result.stderr
    demo = wfe("demo", "--url", "just-a-path.db")
    assert demo.exit_code == 2
    assert "is not a store URL" in demo.stderr


def test_bad_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_URL", "nosuch://env")
    result = wfe("list")
    assert result.exit_code == 2
    assert "'nosuch'" in result.stderr


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["start", "order", "--app", APP, "--data", '{"order_id": "A-1",}'], "column 20"),
        (["start", "order", "--app", APP, "--data", "{order_id: 1}"], "column 2"),
        (["publish", "payment", "k", "--data", '{"amount": 1'], "column 13"),
        (["publish", "payment", "k", "--data", ""], "column 1"),
    ],
)
def test_malformed_data_json(url: str, args: list[str], where: str) -> None:
    result = wfe(*args, "--url", url)
    assert result.exit_code == 2
    assert "Invalid value for --data" in result.stderr
    assert "malformed JSON" in result.stderr
    assert f"line 1, {where}" in result.stderr
    assert "^" in result.stderr
    assert ok_json("list", "--url", url)["workflows"] == []


def test_data_file_missing(url: str) -> None:
    result = wfe("start", "order", "--app", APP, "--url", url, "--data", "@nope.json")
    assert result.exit_code == 2
    assert "cannot read nope.json" in result.stderr


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"order_id": 5}', "data.order_id: expected str, got int"),
        ('{"amount": "lots"}', "data.amount: 'lots' is not a decimal number"),
        ('{"colour": "red"}', "OrderData has no field 'colour'"),
        ('{"payment_window": "soon"}', "data.payment_window: 'soon' is not a duration"),
        ('{"placed_at": "yesterday"}', "data.placed_at"),
        ("[1, 2]", "expected an object for OrderData, got list"),
    ],
)
def test_data_of_the_wrong_shape(url: str, data: str, message: str) -> None:
    result = wfe("start", "order", "--app", APP, "--url", url, "--data", data)
    assert result.exit_code == 2
    assert "Invalid value for --data" in result.stderr
    assert message in result.stderr
    assert ok_json("list", "--url", url)["workflows"] == []


def test_typed_data_errors_name_the_field(url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, TYPED_APP)
    result = wfe(
        "start",
        "typed",
        "--app",
        app,
        "--url",
        url,
        "--data",
        '{"items": [{"sku": "a", "price": "1"}, {"sku": "b"}]}',
    )
    assert result.exit_code == 2
    assert "data.items[1]: Item needs the field(s) price" in result.stderr
    colour = wfe("start", "typed", "--app", app, "--url", url, "--data", '{"color": "green"}')
    assert colour.exit_code == 2
    assert "data.color: 'green' is not one of 'red', 'blue'" in colour.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["show", "no-such-workflow"],
        ["suspend", "no-such-workflow"],
        ["resume", "no-such-workflow"],
        ["terminate", "no-such-workflow"],
    ],
    ids=lambda a: a[0],
)
def test_unknown_workflow_id(url: str, args: list[str]) -> None:
    result = wfe(*args, "--url", url)
    assert result.exit_code == 1
    assert "workflow instance 'no-such-workflow' does not exist in the store" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_definition(url: str) -> None:
    result = wfe("start", "invoice", "--app", APP, "--url", url)
    assert result.exit_code == 2
    assert "Invalid value for DEFINITION" in result.stderr
    assert "'invoice' is not registered by --app wfe_core.demo:workflows" in result.stderr
    assert "(it registers: order v1)" in result.stderr
    version = wfe("start", "order", "--version", "9", "--app", APP, "--url", url)
    assert version.exit_code == 2
    assert "'order' version 9 is not registered" in version.stderr


@pytest.mark.parametrize("command", ["start", "worker"])
def test_missing_app(command: str) -> None:
    args = ["start", "order"] if command == "start" else ["worker"]
    result = wfe(*args, "--url", "memory://")
    assert result.exit_code == 2
    assert f"wfe {command} needs your workflow definitions: pass --app module:attr" in result.stderr
    assert "WFE_APP" in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "is not module:attr"),
        ("wfe_no_such_module_xyz:workflows", "cannot import 'wfe_no_such_module_xyz'"),
        ("wfe_core.demo:nothing_here", "module 'wfe_core.demo' has no attribute 'nothing_here'"),
        ("{app}:number", "is int; expected a Workflow"),
        ("{app}:mixed", "item 1 is int, not a Workflow instance or subclass"),
        ("{app}:bad_factory", "returned int; a factory must return a Workflow"),
        ("{app}:two_args", "function of 2 required arguments"),
        ("{app}:none_registered", "registered no workflows"),
        ("{app}:broken", "registering the workflows failed: RuntimeError: boom"),
    ],
)
def test_bad_app(url: str, tmp_path: Path, spec: str, message: str) -> None:
    if "{app}" in spec:
        spec = spec.format(app=make_app(tmp_path, TYPED_APP).split(":")[0])
    result = wfe("start", "typed", "--app", spec, "--url", url)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_app_module_that_fails_to_import(url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, "raise ImportError('missing dependency: shiny')\n")
    result = wfe("start", "typed", "--app", app, "--url", url)
    assert result.exit_code == 2
    assert "failed: ImportError: missing dependency: shiny" in result.stderr


@pytest.mark.parametrize(
    "attr",
    ["workflows", "single", "klass", "factory", "async_factory", "register", "async_register"],
)
def test_app_forms(url: str, tmp_path: Path, attr: str) -> None:
    app = make_app(tmp_path, TYPED_APP, attr)
    started = ok_json("start", "typed", "--app", app, "--url", url, "--version", "1")
    assert started["definition"] == "typed"


@pytest.mark.parametrize("duration", ["7x", "", "d7", "7", "1h 30", "-1d"])
def test_bad_duration(duration: str) -> None:
    result = wfe("purge", "--status", "complete", "--older-than", duration, "--url", "memory://")
    assert result.exit_code == 2
    assert "Invalid value for '--older-than'" in result.stderr
    assert "is not a duration" in result.stderr


def test_bad_purge_status() -> None:
    result = wfe("purge", "--status", "runnable", "--older-than", "1d", "--url", "memory://")
    assert result.exit_code == 2
    assert "Invalid value for '--status'" in result.stderr


def test_bad_effective_date() -> None:
    result = wfe(
        "publish", "payment", "k", "--effective-date", "next tuesday", "--url", "memory://"
    )
    assert result.exit_code == 2
    assert "'next tuesday' is not an ISO 8601 date-time" in result.stderr


def test_show_and_list_without_app_print_undecodable_data_raw(tmp_path: Path) -> None:
    """Data of a type this process does not know is shown as stored, marked, with no
    --app needed (before, show and list failed asking for --app)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    wid = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    stored = {"$wfe": "dataclass", "t": "elsewhere.Unknown", "v": {"name": "n-1"}}
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("UPDATE wfe_workflows SET data = ? WHERE id = ?", (json.dumps(stored), wid))
    text = wfe("show", wid, "--url", url, env={"COLUMNS": "300"})
    assert text.exit_code == 0, text.stderr
    assert "(raw: type not registered here)" in text.stdout
    assert '"name": "n-1"' in text.stdout
    assert "elsewhere.Unknown" in text.stdout  # the stored JSON and the reason
    shown = ok_json("show", wid, "--url", url)
    assert shown["data"] == stored
    assert [(u["field"], u["note"]) for u in shown["undecodable"]] == [
        ("data", "raw: type not registered here")
    ]
    assert [w["id"] for w in ok_json("list", "--url", url)["workflows"]] == [wid]
    table = wfe("list", "--url", url)
    assert table.exit_code == 0, table.stderr
    assert wid in table.stdout


def test_show_an_event_and_why_it_was_set_aside(url: str) -> None:
    """``wfe show EVENT_ID`` shows the event, with its set-aside reason when it has one."""
    event_id = ok_json("publish", "payment", "K-1", "--url", url, "--data", '{"amount": 3}')["id"]
    shown = ok_json("show", event_id, "--url", url)
    assert shown["kind"] == "event"
    assert (shown["name"], shown["key"], shown["data"]) == ("payment", "K-1", {"amount": 3})
    assert shown["set_aside"] is None

    async def set_aside() -> None:
        host = WorkflowHost.from_url(url)
        async with host.persistence as store:
            assert await store.set_aside_event(event_id, "data names an unknown type X")

    asyncio.run(set_aside())
    after = ok_json("show", event_id, "--url", url)
    assert after["set_aside"] == "data names an unknown type X"
    assert after["is_processed"] is True
    text = wfe("show", event_id, "--url", url)
    assert text.exit_code == 0, text.stderr
    assert "set aside" in text.stdout
    assert "data names an unknown type X" in text.stdout


def test_sqlite_path_in_a_missing_folder(tmp_path: Path) -> None:
    result = wfe("list", "--url", "sqlite:///no/such/folder/wfe.db")
    assert result.exit_code == 1
    assert "the folder" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "args", [["list"], ["start", "order", "--app", APP], ["demo"]], ids=lambda a: a[0]
)
def test_sqlite_file_that_is_not_a_database(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    result = wfe(*args, "--url", "sqlite:///notes.db")
    assert result.exit_code == 1
    assert "is not a SQLite database" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before


def test_sqlite_schema_from_a_newer_version(tmp_path: Path) -> None:
    url = "sqlite:///store.db"
    wid = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute(
            "INSERT INTO wfe_schema_version (version, description, applied_at) "
            "VALUES (999, 'from the future', 0)"
        )
    result = wfe("show", wid, "--url", url)
    assert result.exit_code == 1
    assert "schema version 999" in result.stderr
    assert "upgrade wfe" in result.stderr
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT max(version) FROM wfe_schema_version").fetchone() == (999,)


def test_sqlite_database_locked_by_another_writer(tmp_path: Path) -> None:
    url = "sqlite:///store.db?busy_timeout=0.2"
    first = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = wfe("start", "order", "--app", APP, "--url", url)
        assert result.exit_code == 1
        assert "busy_timeout" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    listed = ok_json("list", "--url", url)
    assert [w["id"] for w in listed["workflows"]] == [first]
    assert ok_json("start", "order", "--app", APP, "--url", url)["status"] == "runnable"


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


def test_demo_on_memory() -> None:
    result = wfe("demo", "--url", "memory://", "--orders", "3", "--payment-window", "1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "worker 1 started" in out
    assert "worker 1 stopped with 2 orders still waiting" in out
    assert "while no worker runs" in out
    assert "worker 2 started on the same store" in out
    assert "demo summary" in out
    assert out.count("shipped") >= 2
    assert "cancelled (timeout)" in out


def test_demo_json_shape() -> None:
    result = wfe("demo", "--url", "memory://", "--orders", "4", "--payment-window", "1", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"url", "seconds", "orders"}
    orders = doc["orders"]
    assert [o["payment_published"] for o in orders] == [
        "worker up",
        "worker up",
        "worker down",
        "never",
    ]
    assert [o["outcome"] for o in orders] == ["shipped"] * 3 + ["cancelled (timeout)"]
    assert [o["finished_by"] for o in orders] == ["worker 1", "worker 1", "worker 2", "worker 2"]
    assert all(o["status"] == "complete" for o in orders)
    assert set(orders[0]) == {
        "order_id",
        "amount",
        "workflow_id",
        "payment_published",
        "status",
        "outcome",
        "finished_by",
    }
    assert "worker 2 started" in result.stderr  # progress goes to stderr with --json


def test_demo_on_the_default_sqlite_file(tmp_path: Path) -> None:
    result = wfe("demo", "--orders", "3", "--payment-window", "2", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "wfe.db").exists()
    doc = json.loads(result.stdout)
    assert [o["outcome"] for o in doc["orders"]] == ["shipped", "shipped", "cancelled (timeout)"]
    listed = ok_json("list", "--definition", "order")
    assert {w["status"] for w in listed["workflows"]} == {"complete"}
    assert len(listed["workflows"]) == 3
    shown = ok_json("show", doc["orders"][0]["workflow_id"])
    assert shown["data"]["status"] == "shipped"


# --------------------------------------------------------------------------------------
# worker (subprocess: real signals)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_stops_cleanly_on_signal(
    tmp_path: Path, workers: list[WorkerProcess], sig: signal.Signals
) -> None:
    worker = WorkerProcess(["--app", APP, "--url", "memory://"], tmp_path)
    workers.append(worker)
    line = worker.wait_for_line("worker started")
    assert "order v1" in line
    code, out, err = worker.stop(sig)
    assert code == 0, err
    assert f"{sig.name}: stopping" in out
    assert "worker stopped" in out


def test_worker_json_lines(tmp_path: Path, workers: list[WorkerProcess]) -> None:
    worker = WorkerProcess(
        ["--app", APP, "--url", "memory://", "--json", "--concurrency", "4"], tmp_path
    )
    workers.append(worker)
    first = json.loads(worker.wait_for_line('"worker_started"'))
    assert first["event"] == "worker_started"
    assert first["workflows"] == [{"id": "order", "version": 1}]
    assert first["url"] == "memory://"
    code, out, _ = worker.stop(signal.SIGTERM)
    assert code == 0
    events = [json.loads(line)["event"] for line in out.splitlines() if line.strip()]
    assert events == ["worker_started", "worker_stopping", "worker_stopped"]


def test_worker_runs_workflows_started_and_resumed_from_the_cli(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    worker = WorkerProcess(["--app", APP, "--url", url, "--poll-interval", "0.1"], tmp_path)
    workers.append(worker)
    worker.wait_for_line("worker started")
    started = ok_json(
        "start",
        "order",
        "--app",
        APP,
        "--url",
        url,
        "--data",
        '{"order_id": "W-1", "amount": "3.50"}',
    )
    wid = started["id"]

    def status_of() -> dict[str, Any]:
        return dict(ok_json("show", wid, "--url", url, "--app", APP))

    deadline = time.monotonic() + 30
    while not any(p["status"] == "waiting_for_event" for p in status_of()["pointers"]):
        assert time.monotonic() < deadline, "the order never waited for its payment"
        time.sleep(0.05)
    ok_json(
        "publish",
        "payment",
        "W-1",
        "--url",
        url,
        "--data",
        '{"amount": "3.50", "reference": "cli"}',
    )
    while (shown := status_of())["status"] != "complete":
        assert time.monotonic() < deadline, f"the order never completed: {shown}"
        time.sleep(0.05)
    assert shown["data"]["status"] == "shipped"
    assert shown["data"]["shipped_with"] == "cli"
    worker.wait_for_line("completed")
    code, out, err = worker.stop(signal.SIGTERM)
    assert code == 0, err
    assert wid in out
    assert "step done" in out
    assert "worker stopped" in out


SLOW_APP = """
    import asyncio
    from pathlib import Path

    from wfe_core import Workflow


    async def slow(context):
        Path("step-started").write_text(context.workflow.id)
        await asyncio.sleep(1.0)
        context.data["slow_done"] = True


    class Slow(Workflow[dict]):
        id = "slow"
        data_type = dict

        def build(self, builder):
            builder.start_with(slow).name("slow step")


    def register(host):
        host.register_workflow(Slow())
"""


def test_worker_stop_waits_for_the_running_step(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    app = make_app(tmp_path, SLOW_APP, "register")
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    worker = WorkerProcess(["--app", app, "--url", url, "--poll-interval", "0.1"], tmp_path)
    workers.append(worker)
    worker.wait_for_line("worker started")
    wid = ok_json("start", "slow", "--app", app, "--url", url, "--data", "{}")["id"]
    marker = tmp_path / "step-started"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    code, out, err = worker.stop(signal.SIGTERM)
    assert code == 0, err
    assert "SIGTERM: stopping" in out
    shown = ok_json("show", wid, "--url", url, "--app", app)
    assert shown["data"] == {"slow_done": True}
    assert shown["pointers"][0]["status"] == "complete"
    assert shown["status"] == "complete"


@pytest.fixture
def worker_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for a worker subprocess: a SQLite file, or a schema of its own on the
    test PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'forced.db'}"
        return
    from wfe_conformance.services import postgres_url
    from wfe_postgres.testing import drop_schema, new_schema_name

    base = postgres_url()
    schema = new_schema_name("wfe_cli_")
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    asyncio.run(drop_schema(base, schema))


@pytest.mark.parametrize(
    ("worker_store", "sig"),
    [("sqlite", signal.SIGTERM), ("sqlite", signal.SIGINT), ("postgres", signal.SIGTERM)],
    ids=["sqlite-SIGTERM", "sqlite-SIGINT", "postgres-SIGTERM"],
    indirect=["worker_store"],
)
def test_second_signal_forces_a_prompt_exit(
    tmp_path: Path, workers: list[WorkerProcess], worker_store: str, sig: signal.Signals
) -> None:
    """A second SIGTERM / Ctrl-C while the worker waits for a running step ends it at
    once: status 128 + the signal's number, one line on stderr, no traceback."""
    app = make_app(tmp_path, BLOCKING_APP, "register")
    worker = WorkerProcess(
        ["--app", app, "--url", worker_store, "--poll-interval", "0.1"], tmp_path
    )
    workers.append(worker)
    worker.wait_for_line("worker started")
    ok_json("start", "block", "--app", app, "--url", worker_store, "--data", "{}")
    marker = tmp_path / "step-started"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    worker.proc.send_signal(sig)
    worker.wait_for_line("again to force")
    started = time.monotonic()
    code, out, err = worker.stop(sig, timeout=15)
    assert time.monotonic() - started < 10
    assert code == 128 + sig.value, err
    assert "Traceback" not in err
    assert "CancelledError" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"wfe worker: {sig.name} again: exiting now with status {code}")
    assert "worker stopped" not in out


CANCELLABLE_APP = """
    import asyncio
    from pathlib import Path

    from wfe_core import Workflow


    async def block(context):
        Path("step-started").write_text(context.workflow.id)
        try:
            await asyncio.wait_for(context.cancelled.wait(), 120)
            Path("step-saw-cancel").write_text(context.workflow.id)
        except TimeoutError:
            pass


    async def after(context):
        Path("after-ran").write_text(context.workflow.id)


    class Block(Workflow[dict]):
        id = "block"
        data_type = dict

        def build(self, builder):
            builder.start_with(block).name("blocking step").then(after).name("after")


    def register(host):
        host.register_workflow(Block())
"""


@pytest.mark.parametrize("worker_store", ["sqlite", "postgres"], indirect=True)
def test_terminate_from_another_process_reaches_the_running_step(
    tmp_path: Path, workers: list[WorkerProcess], worker_store: str
) -> None:
    """`wfe terminate` in another process while a worker runs a long step returns at
    once; the step sees context.cancelled within about a second, the next step never
    runs, and the instance ends TERMINATED."""
    app = make_app(tmp_path, CANCELLABLE_APP, "register")
    worker = WorkerProcess(
        ["--app", app, "--url", worker_store, "--poll-interval", "0.1"], tmp_path
    )
    workers.append(worker)
    worker.wait_for_line("worker started")
    wid = ok_json("start", "block", "--app", app, "--url", worker_store, "--data", "{}")["id"]
    deadline = time.monotonic() + 30
    while not (tmp_path / "step-started").exists():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    asked = time.monotonic()
    result = wfe("terminate", wid, "--url", worker_store)  # no --app needed
    took = time.monotonic() - asked
    assert result.exit_code == 0, result.output
    assert "terminate requested" in result.output or "terminated" in result.output
    assert took < 10, took  # it used to wait ~17 s for the lock, then fail
    seen = tmp_path / "step-saw-cancel"
    while not seen.exists():
        assert time.monotonic() - asked < 30, "the running step never saw the cancellation"
        time.sleep(0.02)
    while ok_json("show", wid, "--url", worker_store)["status"] != "terminated":
        assert time.monotonic() - asked < 30, "the instance never ended TERMINATED"
        time.sleep(0.05)
    assert not (tmp_path / "after-ran").exists()


# --------------------------------------------------------------------------------------
# helpers: durations, data coercion, JSON output
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 604800),
        ("12h", 43200),
        ("30m", 1800),
        ("45s", 45),
        ("1h30m", 5400),
        ("2w", 1209600),
        ("500ms", 0.5),
        ("1.5h", 5400),
        (" 10M ", 600),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_coerce_builds_declared_types() -> None:
    order = coerce(
        {"order_id": "A", "amount": 1.1, "placed_at": "2024-05-01T10:00:00Z", "payment_window": 30},
        OrderData,
    )
    assert order == OrderData(
        "A", Decimal("1.1"), datetime(2024, 5, 1, 10, tzinfo=UTC), timedelta(seconds=30)
    )
    assert coerce({"x": [1]}, dict) == {"x": [1]}
    assert coerce([1, 2], tuple[int, ...]) == (1, 2)
    assert coerce({"1": "a"}, dict[int, str]) == {1: "a"}
    assert coerce(None, int | None) is None
    assert coerce(3, float) == 3.0
    with pytest.raises(ValueError, match=r"data\[0\]: expected int, got str"):
        coerce(["x"], list[int])
    with pytest.raises(ValueError, match="expected bool, got int"):
        coerce(1, bool)


def test_jsonable() -> None:
    value = {
        "d": Decimal("1.50"),
        "t": datetime(2024, 1, 1, tzinfo=UTC),
        "s": {2, 1},
        "td": timedelta(minutes=1),
        "u": uuid.UUID(int=1),
        "order": OrderData("A"),
        "b": b"hi",
        "n": None,
        "tuple": (1, "a"),
        3: "x",
    }
    out = jsonable(value)
    json.dumps(out)
    assert out["d"] == "1.50"
    assert out["t"] == "2024-01-01T00:00:00+00:00"
    assert out["s"] == [1, 2]
    assert out["td"] == 60.0
    assert out["u"] == "00000000-0000-0000-0000-000000000001"
    assert out["order"]["order_id"] == "A"
    assert out["b"] == "aGk="
    assert out["tuple"] == [1, "a"]
    assert out["3"] == "x"
