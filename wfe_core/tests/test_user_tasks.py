"""User tasks beyond the conformance scenarios: definition errors, tasks without
options, ``.when`` on the chosen option, a foreach item reaching the option's
branch, escalations of days under the virtual clock, task ids, and the sync client."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from wfe_core.testing import WorkflowTestEnv
from wfe_core.user_tasks import USER_TASK_ATTRIBUTE, parse_task_id, task_id_of

from wfe_core import (
    DefinitionError,
    HostOptions,
    OpenUserTask,
    StepContext,
    UserTaskNotFound,
    UserTaskNotOpen,
    Workflow,
    WorkflowBuilder,
    WorkflowClient,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

FAST = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.01)
Data = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def noop(context: StepContext[Data]) -> None:
    """Do nothing."""


def note(name: str) -> Any:
    def step(context: StepContext[Data]) -> None:
        context.data.setdefault("log", []).append(name)

    return step


def build(branch: Any) -> None:
    """Run ``branch`` on a fresh builder and build it (definition errors surface)."""
    builder: WorkflowBuilder[Data] = WorkflowBuilder()
    branch(builder.start_with(noop))
    builder.build("t", 1, dict)


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        (lambda b: b.user_task("p"), "give assign_to= or group="),
        (lambda b: b.user_task(42, assign_to="a"), "prompt must be a string"),
        (lambda b: b.user_task("p", assign_to=7), "user_task assign_to must be"),
        (
            lambda b: b.user_task("p", assign_to="a").with_option("x").with_option("x"),
            "offered twice",
        ),
        (lambda b: b.user_task("p", assign_to="a").with_option(""), "non-empty string"),
        (lambda b: b.user_task("p", assign_to="a").do(lambda x: x.start_with(noop)), "follows"),
        (
            lambda b: b.user_task("p", assign_to="a").with_option("x").do(lambda x: None),
            "adds no steps",
        ),
        (
            lambda b: b.user_task("p", assign_to="a").with_escalation(timedelta(hours=1)),
            "needs assign_to= or group=",
        ),
        (
            lambda b: b.user_task("p", assign_to="a").with_escalation("soon", assign_to="b"),
            "expected a timedelta",
        ),
    ],
)
def test_definition_errors_name_the_problem(chain: Any, message: str) -> None:
    """A user task defined wrongly fails when it is built, saying what is wrong."""
    with pytest.raises(DefinitionError, match=message):
        build(chain)


def test_task_ids_round_trip_with_dots_in_the_workflow_id() -> None:
    """A task id names its workflow and pointer; workflow ids may hold dots."""
    assert parse_task_id(task_id_of("orders.2024.A-1", "p-1")) == ("orders.2024.A-1", "p-1")
    with pytest.raises(UserTaskNotFound, match="looks like"):
        parse_task_id("no-dot")


class Choose(Workflow[Data]):
    """A task without options (any value), a `.when` on its outcome, inside a foreach:
    each branch sees its item."""

    id = "choose"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .foreach(lambda d: d["items"], parallel=True)
            .do(
                lambda each: (
                    each.start_with(noop)
                    .user_task(lambda d: "pick", group="pickers")
                    .output(lambda s, d: d.setdefault("picked", []).append(s.option))
                    .when("left")
                    .do(lambda b: b.start_with(note("went left")))
                    .when("right")
                    .do(lambda b: b.start_with(note("went right")))
                )
            )
        )


async def open_tasks(
    host: WorkflowClient, wid: str, count: int, timeout: float = 30.0
) -> list[OpenUserTask]:
    """The open tasks of ``wid`` once there are ``count`` (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await host.get_open_user_tasks(workflow_id=wid)
        if len(found) == count:
            return found
        assert time.monotonic() < deadline, f"expected {count} open tasks of {wid}: {found}"
        await asyncio.sleep(0.01)


async def test_task_without_options_takes_any_value_and_when_branches_on_it() -> None:
    """Without options any value completes the task; it is the step's outcome, so
    `.when(value)` after the task branches on it; two tasks in a foreach are apart."""
    async with WorkflowHost(MemoryPersistenceProvider(), options=FAST) as host:
        host.register_workflow(Choose())
        wid = await host.start_workflow("choose", {"items": [1, 2]})
        first, second = await open_tasks(host, wid, 2)
        assert first.task_id != second.task_id
        assert first.options == ()
        assert (first.assigned_user, first.assigned_group) == (None, "pickers")
        await host.complete_user_task(first.task_id, "left", user="u", groups=["pickers"])
        await host.complete_user_task(second.task_id, "right", user="v", groups="pickers")
        done = await host.wait_for_workflow(wid, 10)
        assert done.status == WorkflowStatus.COMPLETE
        assert sorted(done.data["picked"]) == ["left", "right"]
        assert sorted(done.data["log"]) == ["went left", "went right"]


async def escalated(host: WorkflowClient, wid: str, times: int) -> OpenUserTask:
    """The one open task of ``wid`` once it was escalated ``times`` times (bounded)."""
    deadline = time.monotonic() + 30.0
    while True:
        found = await host.get_open_user_tasks(workflow_id=wid)
        if len(found) == 1 and found[0].escalations == times:
            return found[0]
        assert time.monotonic() < deadline, f"expected {times} escalations: {found}"
        await asyncio.sleep(0.01)


class Escalating(Workflow[Data]):
    """Escalates after one day to bob, after three days to the group leads (with a
    reminder branch each time)."""

    id = "escalating"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .user_task("Sign the contract", assign_to="ann")
            .with_option("signed")
            .with_escalation(
                lambda d: timedelta(days=d["days"]),
                assign_to=lambda d: d["deputy"],
                action=lambda b: b.start_with(note("reminded deputy")),
            )
            .with_escalation(
                timedelta(days=3), group="leads", action=lambda b: b.start_with(note("told leads"))
            )
            .then(note("done"))
        )


async def test_escalations_of_days_under_the_virtual_clock() -> None:
    """Escalations fire in due order, each reassigning the task and running its action
    once; the last assignee completes it."""
    async with WorkflowTestEnv(workflows=[Escalating()]) as env:
        handle = await env.start("escalating", {"days": 1, "deputy": "bob"})
        (task,) = await open_tasks(env.host, handle.id, 1)
        assert task.assigned_user == "ann"
        assert task.escalation_due is not None
        assert task.escalation_due - task.created == timedelta(days=1)
        await env.advance(timedelta(days=1, minutes=1))
        task = await escalated(env.host, handle.id, 1)
        assert (task.assigned_user, task.assigned_group, task.escalations) == ("bob", None, 1)
        assert task.escalation_due is not None
        assert task.escalation_due - task.created == timedelta(days=3)
        await env.advance(timedelta(days=2))
        task = await escalated(env.host, handle.id, 2)
        assert (task.assigned_user, task.assigned_group, task.escalations) == (None, "leads", 2)
        assert task.escalation_due is None
        await env.host.complete_user_task(task.task_id, "signed", user="cy", groups=["leads"])
        done = await env.wait_for_workflow(handle)
        assert done.data["log"] == ["reminded deputy", "told leads", "done"]
        pointer = next(p for p in done.execution_pointers if p.step_name == "user_task")
        history = pointer.extension_attributes[USER_TASK_ATTRIBUTE]["history"]
        assert [(h["from_user"], h["user"], h["group"]) for h in history] == [
            ("ann", "bob", None),
            ("bob", None, "leads"),
        ]


class Simple(Workflow[Data]):
    id = "simple"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .user_task("ok?", assign_to="ann")
            .with_option("ok")
            .do(lambda b: b.start_with(note("ok")))
        )


def test_sync_client_lists_and_completes(tmp_path: Path) -> None:
    """`connect_sync` lists and completes tasks from synchronous code; a host on the
    same SQLite file runs the rest."""
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    wid: list[str] = []
    ready, finish = threading.Event(), threading.Event()
    result: list[Any] = []

    async def run_host() -> None:
        async with WorkflowHost.from_url(url, options=FAST) as host:
            host.register_workflow(Simple())
            wid.append(await host.start_workflow("simple", {}))
            await open_tasks(host, wid[0], 1)
            ready.set()
            result.append(await host.wait_for_workflow(wid[0], 30))
            finish.set()

    thread = threading.Thread(target=lambda: asyncio.run(run_host()), daemon=True)
    thread.start()
    assert ready.wait(30), "the host never opened the task"
    with WorkflowClient.connect_sync(url) as client:
        (task,) = client.get_open_user_tasks(user="ann")
        with pytest.raises(UserTaskNotFound):
            client.complete_user_task(f"{wid[0]}.nope", "ok", user="ann")
        client.complete_user_task(task.task_id, "ok", user="ann")
        with pytest.raises(UserTaskNotOpen):
            client.complete_user_task(task.task_id, "ok", user="ann")
    assert finish.wait(30), "the workflow never finished"
    thread.join(30)
    assert result[0].status == WorkflowStatus.COMPLETE
    assert result[0].data["log"] == ["ok"]


TYPED = """
from dataclasses import dataclass
from datetime import timedelta

from wfe_core import StepContext, Workflow, WorkflowBuilder


@dataclass
class Expense:
    manager: str
    amount: int
    note: str = ""


def pay(context: StepContext[Expense]) -> None:
    context.data.amount += 0


class W(Workflow[Expense]):
    id = "w"

    def build(self, builder: WorkflowBuilder[Expense]) -> None:
        (
            builder.start_with(pay)
            .user_task(lambda e: f"{e.amount}", assign_to=lambda e: e.manager)
            .with_option("a", "A")
            .do(lambda b: b.start_with(pay).then(pay))
            .with_escalation(
                lambda e: timedelta(days=e.amount), group="g", action=lambda b: b.start_with(pay)
            )
            .output(note=lambda s: s.option)
            .then(pay)
        )
"""


@pytest.mark.slow
def test_mypy_strict_checks_the_user_task_chain(tmp_path: Path) -> None:
    """`mypy --strict` accepts a typed user task chain and names a misspelt attribute in
    the assignment, the escalation's delay and an output."""
    api = pytest.importorskip("mypy.api")
    good = tmp_path / "good.py"
    good.write_text(TYPED)
    bad = tmp_path / "bad.py"
    bad.write_text(
        TYPED.replace("e: e.manager", "e: e.manger")
        .replace("days=e.amount", "days=e.amont")
        .replace("s: s.option", "s: s.optoin")
    )
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file=",
            "--python-version=3.11",
            f"--cache-dir={tmp_path / '.mypy_cache'}",
            "--no-error-summary",
            str(good),
            str(bad),
        ]
    )
    assert not stderr, stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "good.py" in e], errors
    assert len(errors) == 3, errors
    for name in ('"manger"', '"amont"', '"optoin"'):
        assert any(name in e for e in errors), (name, errors)
