"""Structured logs (:mod:`wfe_core.logs`): the filter adding the ids of the running pass
and step, the JSON and text formatters, ``configure_logging``, and the ids on real
records -- of a step's own code (on the loop and in a thread) and of the engine, inside
a pass and outside one (an event delivered, a failing step retried)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from wfe_core.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_ids,
    queued_ids,
)
from wfe_core.models import QueueType

from wfe_core import (
    ErrorBehavior,
    HostOptions,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

FAST = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.01)
Data = dict[str, Any]
APP_LOGGER = f"wfe_test_logs_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Collect(logging.Handler):
    """Keeps every record it sees (after the ids filter)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def find(self, needle: str) -> list[logging.LogRecord]:
        return [r for r in self.records if needle in r.getMessage()]


@pytest.fixture
def collected() -> Iterator[_Collect]:
    """Records of ``wfe`` (at DEBUG) and of the test's app logger, with the ids filter."""
    handler = _Collect()
    saved: list[tuple[logging.Logger, int]] = []
    for name in ("wfe", APP_LOGGER):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield handler
    for logger, level in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _record(msg: str = "hello", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("wfe.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


# ---------------------------------------------------------------------- units


def test_filter_outside_a_pass_adds_nothing_and_keeps_extra() -> None:
    record = _record(workflow_id="wf-given")
    assert ContextFilter().filter(record) is True
    assert vars(record)["workflow_id"] == "wf-given"
    for key in ("definition", "step", "pointer_id", "attempt"):
        assert not hasattr(record, key)


def test_json_formatter_writes_one_object_with_ids_extras_and_exception() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    try:
        raise ValueError("bad input")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "wfe.host", logging.ERROR, __file__, 7, "failed %s", ("x",), exc_info
    )
    extra: dict[str, Any] = {"workflow_id": "wf-1", "definition": "order", "pointer_id": "p-1"}
    extra.update(step=None, attempts=[1, 2], thing=Opaque())  # step None: left out
    record.__dict__.update(extra)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "failed x"
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "wfe.host"
    assert doc["time"].endswith("+00:00")
    assert (doc["workflow_id"], doc["definition"], doc["pointer_id"]) == ("wf-1", "order", "p-1")
    assert "step" not in doc
    assert doc["attempts"] == [1, 2]
    assert doc["thing"] == "<opaque>"
    assert doc["exc_type"] == "builtins.ValueError"
    assert doc["exc_message"] == "bad input"
    assert "raise ValueError" in doc["traceback"]
    assert list(doc)[:5] == ["time", "level", "logger", "message", "workflow_id"]


def test_text_formatter_appends_the_ids_compactly() -> None:
    fmt = TextFormatter("%(levelname)s %(message)s")
    record = _record(workflow_id="wf-1", definition="order", step="charge", pointer_id="p-9")
    assert fmt.format(record) == "INFO hello [wf=wf-1 def=order step=charge ptr=p-9]"
    assert fmt.format(_record()) == "INFO hello"
    spaced = fmt.format(_record(workflow_id="wf-1", step="step 0 (greet)"))
    assert spaced == 'INFO hello [wf=wf-1 step="step 0 (greet)"]'


def test_log_ids_and_queued_ids() -> None:
    assert log_ids(workflow_id="w", step=None) == {"workflow_id": "w"}
    assert queued_ids(QueueType.EVENT, "e-1") == {"event_id": "e-1"}
    assert queued_ids(QueueType.WORKFLOW, "w-1") == {"workflow_id": "w-1"}


@pytest.fixture
def root_restored() -> Iterator[None]:
    """Undo ``configure_logging`` on the root and ``wfe`` loggers."""
    root, engine = logging.getLogger(), logging.getLogger("wfe")
    handlers, levels = list(root.handlers), (root.level, engine.level, engine.propagate)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    engine.setLevel(levels[1])
    engine.propagate = levels[2]


def test_configure_logging_json_to_the_current_stderr(
    root_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = configure_logging("text", "info")
    handler = configure_logging("json", "info")
    root = logging.getLogger()
    assert handler in root.handlers
    assert first not in root.handlers  # replaced, not added
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # the handler writes to stderr as it is now
    logging.getLogger(APP_LOGGER).info("ready %d", 3, extra={"workflow_id": "wf-7"})
    logging.getLogger("wfe.host").debug("not at info")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    doc = json.loads(lines[0])
    assert (doc["message"], doc["workflow_id"], doc["logger"]) == ("ready 3", "wf-7", APP_LOGGER)


def test_configure_logging_rejects_unknown_format_and_level(root_restored: None) -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("xml", "info")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("json", "loud")


# ---------------------------------------------------------------------- real records


class Logging(Workflow[Data]):
    """An async step and a thread step that log, and a step that fails once."""

    id = f"logs-{uuid.uuid4().hex[:6]}"
    data_type = dict

    def __init__(self) -> None:
        self.failed = False

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        app = logging.getLogger(APP_LOGGER)

        async def on_loop(context: StepContext[Data]) -> None:
            app.info("async step says hello")

        def in_thread(context: StepContext[Data]) -> None:
            app.info("thread step says hello")

        def flaky(context: StepContext[Data]) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("first try fails")

        (
            builder.start_with(on_loop)
            .name("greet")
            .then(in_thread)
            .name("greet-thread")
            .wait_for("go", key=lambda data: data["key"])
            .then(flaky)
            .name("flaky")
            .on_error(ErrorBehavior.RETRY, timedelta(milliseconds=10))
        )


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_step_and_engine_records_carry_the_ids(collected: _Collect) -> None:
    wf = Logging()
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(wf)
        key = uuid.uuid4().hex
        wid = await host.start_workflow(wf.id, {"key": key})

        async def waiting() -> bool:
            subs = await host.persistence.get_subscriptions(
                "go", key, datetime(9999, 1, 1, tzinfo=UTC)
            )
            return bool(subs)

        await _until(waiting)
        event_id = await host.publish_event("go", key, {"ok": True})
        done = await host.wait_for_workflow(wid, 20)
    assert done.status is WorkflowStatus.COMPLETE
    pointers = {p.id: p for p in done.execution_pointers}

    def check_step(record: logging.LogRecord, name: str) -> None:
        assert vars(record)["workflow_id"] == wid
        assert vars(record)["definition"] == wf.id
        assert vars(record)["version"] == 1
        assert vars(record)["step"] == f"step {vars(record)['step_id']} ({name})"  # display name
        pointer = pointers[vars(record)["pointer_id"]]
        assert pointer.step_id == vars(record)["step_id"]
        assert vars(record)["attempt"] == 1

    # a step's own records: on the loop and in a thread (run_in_thread)
    (on_loop,) = collected.find("async step says hello")
    check_step(on_loop, "greet")
    (in_thread,) = collected.find("thread step says hello")
    check_step(in_thread, "greet-thread")
    assert in_thread.threadName != on_loop.threadName
    # the engine's record of a failing step (retried): its workflow, step and pointer
    (failed,) = collected.find("first try fails")
    assert failed.name == "wfe.executor"
    check_step(failed, "flaky")
    assert pointers[vars(failed)["pointer_id"]].retry_count == 1  # it was retried
    # delivering the event happens outside any pass: the record says which ones
    (delivered,) = [
        r for r in collected.find("delivered to workflow") if vars(r)["event_id"] == event_id
    ]
    assert vars(delivered)["workflow_id"] == wid
    assert vars(delivered)["definition"] == wf.id
    assert pointers[vars(delivered)["pointer_id"]].event_published
