"""``wfe worker --log-format json``: a real worker subprocess writes only JSON lines,
and the records of a step's own code and of the engine carry the workflow's ids.

Each test has its own SQLite file and app module in ``tmp_path`` and runs there."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

WFE = Path(sys.executable).with_name("wfe")
DEMO = "wfe_core.demo:workflows"

APP = """
    import logging

    from wfe_core import ErrorBehavior, Workflow
    from datetime import timedelta

    log = logging.getLogger("logdemo_app")
    tries = []


    def charge(context):
        tries.append(1)
        log.info("charging order %s", context.data["order"])
        if len(tries) == 1:
            raise RuntimeError("card reader busy")


    class LogDemo(Workflow):
        id = "logdemo"
        data_type = dict

        def build(self, builder):
            builder.start_with(charge).name("charge").on_error(
                ErrorBehavior.RETRY, timedelta(milliseconds=10)
            )


    workflows = [LogDemo]
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(extra)
    return env


class _Process:
    """A subprocess whose stdout and stderr lines are read as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._queue: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._queue.put((name, line))
        self._queue.put((name, None))

    def _take(self, timeout: float) -> bool:
        try:
            name, line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is not None:
            self.lines[name].append(line)
        return True

    def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        """Until a line (either stream) holds ``needle``."""
        deadline = time.monotonic() + timeout
        while not any(needle in line for lines in self.lines.values() for line in lines):
            left = deadline - time.monotonic()
            took = left > 0 and self._take(min(left, 0.5))
            if not took and (left <= 0 or self.proc.poll() is not None):
                raise AssertionError(f"no line with {needle!r}: {self.lines!r}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then collect everything it wrote; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout)
        while self._take(0):
            pass
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def processes() -> Iterator[list[_Process]]:
    started: list[_Process] = []
    yield started
    for p in started:
        p.kill()


def _docs(lines: list[str], stream: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object (failing on the first that is not)."""
    docs = []
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{stream} line is not JSON: {line!r}")
        assert isinstance(doc, dict), line
        docs.append(doc)
    return docs


def test_worker_json_logs_carry_the_ids(tmp_path: Path, processes: list[_Process]) -> None:
    module = f"wfe_logdemo_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP))
    app, url = f"{module}:workflows", f"sqlite:///{tmp_path / 'x.db'}"
    env = _env(PYTHONUNBUFFERED="1")
    options = ["--url", url, "--app", app]
    worker = _Process(
        [str(WFE), "worker", "--log-format", "json", "--log-level", "info", *options],
        tmp_path,
        env,
    )
    processes.append(worker)
    worker.wait_for('"worker_started"')
    started = subprocess.run(
        [str(WFE), "start", "logdemo", *options, "--json", "--data", '{"order": "A-17"}'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    wid = json.loads(started.stdout)["id"]
    worker.wait_for('"workflow_completed"')
    assert worker.stop() == 0
    out = _docs(worker.lines["stdout"], "stdout")
    err = _docs(worker.lines["stderr"], "stderr")
    assert [d["workflow_id"] for d in out if d.get("event") == "workflow_completed"] == [wid]

    # the step's own records (the first try and the retry), with the step's ids
    charging = [d for d in err if d["message"] == "charging order A-17"]
    assert [d["attempt"] for d in charging] == [1, 2]
    for doc in charging:
        assert doc["logger"] == "logdemo_app"
        assert doc["level"] == "INFO"
        assert doc["workflow_id"] == wid
        assert doc["definition"] == "logdemo"
        assert doc["step"] == "step 0 (charge)"
        assert doc["step_id"] == 0
        assert doc["pointer_id"]
        assert doc["time"].endswith("+00:00")
    # the engine's record of the failure: same ids
    (failed,) = [d for d in err if d["logger"] == "wfe.executor"]
    assert "card reader busy" in failed["message"]
    assert failed["level"] == "WARNING"
    assert (failed["workflow_id"], failed["pointer_id"]) == (wid, charging[0]["pointer_id"])


def test_log_format_from_the_environment_and_its_errors(
    tmp_path: Path, processes: list[_Process]
) -> None:
    """WFE_LOG_FORMAT=json picks JSON; an unknown format is a usage error naming it."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    bad = subprocess.run(
        [str(WFE), "worker", "--log-format", "xml", "--url", url, "--app", DEMO],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "'xml' is not one of 'text', 'json'" in bad.stderr
    worker = _Process(
        [str(WFE), "worker", "--url", url, "--app", DEMO],
        tmp_path,
        _env(PYTHONUNBUFFERED="1", WFE_LOG_FORMAT="json"),
    )
    processes.append(worker)
    worker.wait_for('"worker_started"')
    assert worker.stop() == 0
    assert [d["event"] for d in _docs(worker.lines["stdout"], "stdout")] == [
        "worker_started",
        "worker_stopping",
        "worker_stopped",
    ]
    _docs(worker.lines["stderr"], "stderr")
