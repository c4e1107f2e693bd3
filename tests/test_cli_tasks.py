"""``wfe tasks list|complete`` and the open user tasks in ``wfe show``: a real
``wfe worker`` subprocess runs an approval workflow on a SQLite file while the
commands run in process (CliRunner) against the same file."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli
from worker_process import WorkerProcess

APPROVAL_APP = """
    from datetime import timedelta
    from pathlib import Path

    from wfe_core import Workflow


    def mark(name):
        def step(context):
            Path(name).write_text(context.workflow.id)
        step.__name__ = name
        return step


    class Approval(Workflow[dict]):
        id = "approval"
        data_type = dict

        def build(self, builder):
            (
                builder.start_with(mark("started"))
                .user_task(lambda d: f"Approve {d['item']}?", assign_to=lambda d: d["owner"])
                .with_option("yes", "Approve")
                .do(lambda b: b.start_with(mark("approved")))
                .with_option("no", "Reject")
                .do(lambda b: b.start_with(mark("rejected")))
                .with_escalation(timedelta(hours=4), group="leads")
                .output(lambda s, d: d.update(choice=s.option, note=s.completion_data))
                .name("approve")
            )


    def register(host):
        host.register_workflow(Approval())
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_URL", raising=False)
    monkeypatch.delenv("WFE_APP", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


def wfe(*args: str) -> Result:
    """Run ``wfe ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def poll(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """``check()`` once it is truthy, polling up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def app(tmp_path: Path) -> str:
    name = f"wfe_test_tasks_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APPROVAL_APP))
    return f"{name}:register"


def test_tasks_list_complete_and_show(
    tmp_path: Path, app: str, workers: list[WorkerProcess]
) -> None:
    """A task opened by a worker is listed (text and JSON, filtered by user and
    group), shown by ``wfe show``, refused to the wrong user and a bad option,
    completed once, and refused a second time; the workflow then completes."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    worker = WorkerProcess(["--app", app, "--url", url, "--poll-interval", "0.1"], tmp_path)
    workers.append(worker)
    worker.wait_for_line("worker started")
    data = '{"item": "laptop", "owner": "ann"}'
    wid = ok_json("start", "approval", "--app", app, "--url", url, "--data", data)["id"]

    listed = poll(lambda: ok_json("tasks", "list", "--url", url), "the open user task")
    (task,) = listed
    assert task["workflow_id"] == wid
    assert task["definition"] == "approval"
    assert task["step"] == "approve"
    assert task["prompt"] == "Approve laptop?"
    assert task["assigned_user"] == "ann"
    assert task["assigned_group"] is None
    assert task["options"] == [
        {"value": "yes", "label": "Approve"},
        {"value": "no", "label": "Reject"},
    ]
    assert task["escalation_due"] is not None
    task_id = task["task_id"]
    assert task_id.startswith(f"{wid}.")
    assert [t["task_id"] for t in ok_json("tasks", "list", "--url", url, "--user", "ann")] == [
        task_id
    ]
    assert ok_json("tasks", "list", "--url", url, "--user", "bob") == []
    assert ok_json("tasks", "list", "--url", url, "--group", "leads") == []
    assert ok_json("tasks", "list", "--url", url, "--workflow", "no-such-id") == []
    text = wfe("tasks", "list", "--url", url, "--workflow", wid)
    assert text.exit_code == 0, text.output
    assert task_id in text.output
    assert "laptop?" in text.output  # the prompt (the table may wrap it)
    assert "ann" in text.output

    shown = ok_json("show", wid, "--url", url)
    assert [t["task_id"] for t in shown["user_tasks"]] == [task_id]
    table = wfe("show", wid, "--url", url)
    assert table.exit_code == 0, table.output
    assert "open user tasks" in table.output
    assert task_id in table.output

    refused = wfe("tasks", "complete", task_id, "--url", url, "--user", "bob", "--option", "yes")
    assert refused.exit_code == 1
    assert "may not complete" in refused.output
    bad = wfe("tasks", "complete", task_id, "--url", url, "--user", "ann", "--option", "maybe")
    assert bad.exit_code == 2
    assert "'maybe' is not an option" in bad.output
    unknown = wfe(
        "tasks", "complete", f"{wid}.nope", "--url", url, "--user", "ann", "--option", "yes"
    )
    assert unknown.exit_code == 1
    assert "no user task" in unknown.output
    assert not (tmp_path / "approved").exists()

    done = ok_json(
        "tasks", "complete", task_id, "--url", url, "--user", "ann", "--option", "yes",
        "--data", '{"comment": "ok"}',
    )  # fmt: skip
    assert done["completed"] is True
    again = wfe("tasks", "complete", task_id, "--url", url, "--user", "ann", "--option", "no")
    assert again.exit_code == 1
    assert "is not open" in again.output
    assert "'ann' completed it with 'yes'" in again.output

    final = poll(
        lambda: (s := ok_json("show", wid, "--url", url))["status"] == "complete" and s,
        "the workflow to complete",
    )
    assert final["user_tasks"] == []
    assert final["data"]["choice"] == "yes"
    assert final["data"]["note"] == {"comment": "ok"}
    assert (tmp_path / "approved").exists()
    assert not (tmp_path / "rejected").exists()
    assert ok_json("tasks", "list", "--url", url) == []
    assert "no open user tasks" in wfe("tasks", "list", "--url", url).output


def test_tasks_complete_by_group_member(
    tmp_path: Path, app: str, workers: list[WorkerProcess]
) -> None:
    """``--group`` makes a member of the assigned group able to complete the task;
    ``tasks complete --data`` with invalid JSON is refused before anything is done."""
    url = f"sqlite:///{tmp_path / 'group.db'}"
    worker = WorkerProcess(["--app", app, "--url", url, "--poll-interval", "0.1"], tmp_path)
    workers.append(worker)
    worker.wait_for_line("worker started")
    data = '{"item": "desk", "owner": "ann"}'
    wid = ok_json("start", "approval", "--app", app, "--url", url, "--data", data)["id"]
    (task,) = poll(lambda: ok_json("tasks", "list", "--url", url, "--user", "ann"), "the task")
    bad = wfe(
        "tasks", "complete", task["task_id"], "--url", url, "--user", "ann", "--option", "no",
        "--data", "{not json",
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "--data" in bad.output
    # ann in the right user: also when she names groups
    ok_json(
        "tasks", "complete", task["task_id"], "--url", url, "--user", "ann",
        "--group", "staff", "--option", "no",
    )  # fmt: skip
    final = poll(
        lambda: (s := ok_json("show", wid, "--url", url))["status"] == "complete" and s,
        "the workflow to complete",
    )
    assert final["data"]["choice"] == "no"
    assert (tmp_path / "rejected").exists()
