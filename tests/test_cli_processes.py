"""``wfe worker --processes N``: a supervisor running N worker processes on one store.

Real subprocesses on a SQLite file (``tmp_path``) and on a schema of its own on the test
PostgreSQL: the work is shared between the processes, SIGTERM stops every child
(checked by pid), a child killed with SIGKILL is restarted, and bad input is refused.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import queue
import signal
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from wfe_core.cli import cli
from worker_process import BLOCKING_APP, WorkerProcess

from wfe_core import Workflow, WorkflowClient, WorkflowStatus

PID_APP = """
    import os
    import time

    from wfe_core import Workflow


    def work(context):
        time.sleep(0.02)
        context.workflow.data.setdefault("pids", []).append(os.getpid())


    class Pids(Workflow[dict]):
        id = "pids"
        data_type = dict

        def build(self, builder):
            builder.start_with(work).then(work)


    def register(host):
        host.register_workflow(Pids())
"""


class Supervisor(WorkerProcess):
    """``wfe ARGS`` (a ``worker --processes N --json``) in ``cwd``; its stdout JSON
    lines can be awaited."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        super().__init__(args, cwd, command=())
        self.events: list[dict[str, Any]] = []
        self.other: list[str] = []

    def _take(self, timeout: float) -> bool:
        """Read one line if one comes within ``timeout``; False at the end of stdout."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return True
        if line is None:
            self._queue.put(None)
            return False
        try:
            self.events.append(json.loads(line))
        except ValueError:
            self.other.append(line)
        return True

    def wait_for(self, event: str, count: int = 1, timeout: float = 90.0) -> list[dict[str, Any]]:
        """The first ``count`` lines of ``event``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.get("event") == event]
            if len(found) >= count:
                return found[:count]
            left = deadline - time.monotonic()
            if left <= 0 or not self._take(min(left, 0.5)):
                ended = self.proc.poll() is not None
                err = self.proc.stderr.read() if ended and self.proc.stderr else ""
                raise AssertionError(
                    f"{count} x {event!r} not seen in {self.events!r} {self.other!r} {err}"
                )

    def child_pids(self) -> set[int]:
        """Every child pid the supervisor reported (started or restarted)."""
        pids: set[int] = set()
        for e in self.events:
            if e.get("event") == "supervisor_started":
                pids.update(e["pids"])
            elif e.get("event") == "process_restarted":
                pids.add(e["pid"])
        return pids

    def signal_and_wait(
        self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0
    ) -> tuple[int, str]:
        """Send ``sig``; the exit status and stderr (its JSON lines are read)."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._take(0.5):
            pass
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        """Kill it (and any child it left) if still running."""
        super().kill()
        for pid in self.child_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pids: set[int], timeout: float = 30.0) -> None:
    """Wait until none of ``pids`` runs."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    """Supervisors a test started; killed (with their children) at the end."""
    started: list[Supervisor] = []
    yield started
    for s in started:
        s.kill()


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or a schema of its own on the test PostgreSQL (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'processes.db'}"
        return
    from wfe_conformance.services import postgres_url
    from wfe_postgres.testing import drop_schema, new_schema_name

    base = postgres_url()
    schema = new_schema_name("wfe_procs_")
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    asyncio.run(drop_schema(base, schema))


def make_app(tmp_path: Path) -> tuple[str, Workflow[Any]]:
    """Write the app module into ``tmp_path``: its ``--app`` spec and its workflow."""
    name = f"wfe_procs_app_{uuid.uuid4().hex[:10]}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(PID_APP))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return f"{name}:register", module.Pids()


async def run_workflows(url: str, workflow: Workflow[Any], n: int) -> list[int]:
    """Start ``n`` instances and wait for them all; the pids their steps ran in."""
    async with WorkflowClient.from_url(url) as client:
        client.register_workflow(workflow)
        ids = [await client.start_workflow("pids", {}) for _ in range(n)]
        pids: list[int] = []
        for wid in ids:
            done = await client.wait_for_workflow(wid, 120)
            assert done.status is WorkflowStatus.COMPLETE, (wid, done.status)
            assert len(done.data["pids"]) == 2
            pids += done.data["pids"]
        return pids


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_processes_share_the_work_restart_and_stop(
    tmp_path: Path, supervisors: list[Supervisor], store: str
) -> None:
    """Two processes both run steps of 40 workflows; a child killed with SIGKILL is
    restarted and work goes on; SIGTERM stops every child and the supervisor exits 0."""
    app, workflow = make_app(tmp_path)
    common = ["--app", app, "--processes", "2", "--json", "--no-steps", "--poll-interval", "0.1"]
    if store.startswith("sqlite"):  # the group's --url is forwarded too
        args = ["--url", store, "worker", *common]
    else:
        args = ["worker", "--url", store, *common]
    sup = Supervisor(args, tmp_path)
    supervisors.append(sup)
    started = sup.wait_for("worker_started", 2)
    first = set(sup.wait_for("supervisor_started")[0]["pids"])
    assert {e["pid"] for e in started} == first
    assert len(first) == 2

    pids = asyncio.run(run_workflows(store, workflow, 40))
    assert set(pids) <= first
    assert len(set(pids)) == 2, f"only {set(pids)} did work"

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    exited = sup.wait_for("process_exited")[0]
    assert exited["pid"] == victim
    assert exited["status"] == -signal.SIGKILL
    restarted = sup.wait_for("process_restarted")[0]["pid"]
    assert restarted not in first
    sup.wait_for("worker_started", 3)
    more = asyncio.run(run_workflows(store, workflow, 10))
    assert set(more) <= first | {restarted}

    children = sup.child_pids()
    assert children == first | {restarted}
    code, err = sup.signal_and_wait(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    assert len(sup.wait_for("worker_stopped", 2)) == 2
    assert sup.wait_for("supervisor_stopped")[0]["exit_status"] == 0
    assert not [p for p in children if alive(p)], "a child outlived the supervisor"


def test_children_stop_when_the_supervisor_is_killed(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    """SIGKILL to the supervisor leaves no worker running (Linux: parent-death signal)."""
    app, _ = make_app(tmp_path)
    url = f"sqlite:///{tmp_path / 'orphans.db'}"
    sup = Supervisor(["worker", "--url", url, "--app", app, "--processes", "2", "--json"], tmp_path)
    supervisors.append(sup)
    sup.wait_for("worker_started", 2)
    children = sup.child_pids()
    assert len(children) == 2
    sup.proc.kill()
    sup.proc.wait(timeout=30)
    wait_gone(children)


def test_bad_app_is_not_restarted(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    """Children failing on bad input (status 2) make the supervisor give up at once,
    with exit status 1 and the child's own error on stderr."""
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    args = ["worker", "--url", url, "--app", "no_such_module_x:app", "--processes", "2"]
    sup = Supervisor([*args, "--json"], tmp_path)
    supervisors.append(sup)
    code = sup.proc.wait(timeout=90)
    assert sup.proc.stderr is not None
    err = sup.proc.stderr.read()
    assert code == 1, err
    assert "no_such_module_x" in err
    assert "bad input" in err
    assert "not restarting" in err
    assert not [e for e in sup.events if e.get("event") == "process_restarted"]
    wait_gone(sup.child_pids())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "0 is not in the range"),
        (["--processes", "x"], "is not a valid integer"),
        (["--processes", "2", "--url", "memory://"], "not memory://"),
        (["--processes", "3", "--metrics-port", "65534"], "above 65535"),
    ],
)
def test_bad_processes_are_usage_errors(
    tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong --processes (or one that cannot work with the other options) is refused
    with status 2 before anything starts."""
    monkeypatch.chdir(tmp_path)
    url = ["--url", f"sqlite:///{tmp_path / 'x.db'}"] if "--url" not in args else []
    result = CliRunner().invoke(cli, ["worker", "--app", "wfe_core.demo:workflows", *url, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_processes_in_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``processes`` is a key of the project config, checked like the option."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / "wfe.toml").write_text("processes = 0\n")
    result = CliRunner().invoke(cli, ["worker", "--app", "wfe_core.demo:workflows"])
    assert result.exit_code == 2, result.output
    assert "processes in" in result.output
    assert "wfe.toml" in result.output


def test_second_ctrl_c_forces_every_process_out(
    tmp_path: Path, supervisors: list[Supervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches every child once (the idle one stops at once, the busy one waits
    for its step); a second Ctrl-C ends them all at once, status 130, none left."""
    monkeypatch.chdir(tmp_path)  # `wfe start` below imports the app from here
    name = f"wfe_procs_block_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BLOCKING_APP))
    url = f"sqlite:///{tmp_path / 'block.db'}"
    args = ["worker", "--url", url, "--app", f"{name}:register", "--processes", "2"]
    sup = Supervisor([*args, "--json", "--poll-interval", "0.1"], tmp_path)
    supervisors.append(sup)
    sup.wait_for("worker_started", 2)
    children = sup.child_pids()
    start = CliRunner().invoke(
        cli, ["start", "block", "--url", url, "--app", f"{name}:register", "--data", "{}"]
    )
    assert start.exit_code == 0, start.output
    deadline = time.monotonic() + 60
    while not (tmp_path / "step-started").exists():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    sup.proc.send_signal(signal.SIGINT)
    assert sup.wait_for("supervisor_stopping")[0]["signal"] == "SIGINT"
    assert len(sup.wait_for("worker_stopping", 2)) == 2  # each child got it once
    sup.wait_for("worker_stopped", 1)  # the idle one; the other waits for its step
    asked = time.monotonic()
    code, err = sup.signal_and_wait(signal.SIGINT, timeout=30)
    assert time.monotonic() - asked < 20
    assert code == 130, err
    assert "Traceback" not in err
    wait_gone(children)
