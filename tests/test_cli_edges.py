"""The ``wfe`` command line at the edges: settings that are not finite numbers, inputs
that used to end in a traceback, the lock / queue / lifecycle services of commands that
write, and reads of a store another process holds the write lock on.

Commands run in process through click's CliRunner (``catch_exceptions=False``: an
unexpected exception fails the test instead of becoming an exit status), each test in
its own ``tmp_path`` with its own store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli, parse_duration
from wfe_core.models import QueueType

from wfe_core import HostOptions

APP = "wfe_core.demo:workflows"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WFE_URL", "WFE_APP", "WFE_LOCK_URL", "WFE_QUEUE_URL", "WFE_LIFECYCLE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite store URL in this test's folder (not created yet)."""
    return f"sqlite:///{tmp_path / 'store.db'}"


def wfe(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``wfe ARGS`` in process; exceptions propagate."""
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def refused(result: Result, option: str, *words: str) -> None:
    """A clean usage error: status 2, ``Error: Invalid value for <option>`` and
    ``words`` on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Error: Invalid value for" in result.stderr
    assert option in result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return list(db.execute(sql).fetchall())


# --------------------------------------------------------------------------------------
# NaN and infinity as settings
# --------------------------------------------------------------------------------------

NOT_FINITE = ["nan", "inf", "-inf", "NaN", "infinity"]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(
    "args",
    [
        ["worker", "--app", APP, "--poll-interval"],
        ["worker", "--app", APP, "--stop-timeout"],
        ["demo", "--payment-window"],
    ],
    ids=["poll-interval", "stop-timeout", "payment-window"],
)
def test_numeric_options_refuse_non_finite_numbers(args: list[str], value: str) -> None:
    # A URL no provider serves: should the value be accepted, the command fails on the
    # URL (and the test with it) instead of running a worker or a demo for good.
    result = wfe(*args, value, "--url", "nosuch://never-opened")
    refused(result, f"'{args[-1]}'")
    assert "finite" in result.stderr or "range" in result.stderr


def _float_fields() -> list[str]:
    defaults = HostOptions()
    return [
        f.name
        for f in dataclasses.fields(HostOptions)
        if isinstance(getattr(defaults, f.name), float)
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", _float_fields())
def test_host_options_refuse_non_finite_numbers(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"HostOptions\.{name} must be a finite number"):
        HostOptions(**{name: value})


# --------------------------------------------------------------------------------------
# Inputs that ended in a traceback
# --------------------------------------------------------------------------------------


def test_data_with_a_5000_digit_integer(store: str) -> None:
    result = wfe("publish", "payment", "k", "--url", store, "--data", "[" + "7" * 5000 + "]")
    refused(result, "--data", "4300 digits")
    assert rows(Path(urlsplit(store).path), "SELECT id FROM wfe_events") == []


def test_data_nested_100k_levels_deep(store: str, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = wfe("start", "order", "--app", APP, "--url", store, "--data", f"@{deep}")
    refused(result, "--data", "nested too deeply")


def test_data_file_that_is_not_utf8(store: str, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"name": "café"}'.encode("latin-1"))
    result = wfe("publish", "payment", "k", "--url", store, "--data", f"@{latin}")
    refused(result, "--data", "is not UTF-8 text", "0xe9")


@pytest.mark.parametrize("form", ["-", "@-"])
def test_data_from_stdin_that_is_not_utf8(store: str, form: str) -> None:
    result = wfe("publish", "payment", "k", "--url", store, "--data", form, input=b'"caf\xe9"')
    refused(result, "--data", "stdin is not UTF-8 text")
    assert rows(Path(urlsplit(store).path), "SELECT id FROM wfe_events") == []


def test_data_from_a_real_stdin_that_is_not_utf8(store: str, tmp_path: Path) -> None:
    """In a real process under the C locale, stdin bytes that are not UTF-8 used to be
    stored silently (as lone surrogates); they are refused."""
    code = "import sys; from wfe_core.cli import main; main(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, "publish", "payment", "k", "--url", store, "--data", "-"],
        input=b'{"name": "caf\xe9"}',
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "", "PYTHONUTF8": "0"},
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "Invalid value for --data: stdin is not UTF-8 text" in err
    assert "Traceback" not in err
    assert rows(tmp_path / "store.db", "SELECT id FROM wfe_events") == []


@pytest.mark.parametrize("text", ['{"amount": NaN}', "[Infinity]", "[-Infinity]", "[1e400]"])
def test_data_that_is_not_a_finite_json_number(store: str, text: str) -> None:
    result = wfe("publish", "payment", "k", "--url", store, "--data", text)
    refused(result, "--data")
    assert rows(Path(urlsplit(store).path), "SELECT id FROM wfe_events") == []


@pytest.mark.parametrize("text", ['"\\ud800"', '{"\\udfff": 1}', '[{"a": ["x\\ud83d"]}]'])
def test_data_with_a_lone_surrogate(store: str, text: str) -> None:
    result = wfe("publish", "payment", "k", "--url", store, "--data", text)
    refused(result, "--data", "lone surrogate")
    assert rows(Path(urlsplit(store).path), "SELECT id FROM wfe_events") == []


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"], ids=["before", "after"]
)
def test_effective_date_out_of_range(store: str, when: str) -> None:
    result = wfe("publish", "payment", "k", "--url", store, "--effective-date", when)
    refused(result, "--effective-date", "out of range")


def test_purge_older_than_before_the_year_one(store: str) -> None:
    result = wfe("purge", "--status", "complete", "--older-than", "200000w", "--url", store)
    refused(result, "--older-than", "before the year 1")


@pytest.mark.parametrize("duration", ["99999999999999999999999d", "1" + "0" * 400 + "s"])
def test_purge_older_than_an_overflowing_duration(store: str, duration: str) -> None:
    result = wfe("purge", "--status", "complete", "--older-than", duration, "--url", store)
    refused(result, "--older-than", "too long a duration")


@pytest.mark.parametrize(
    "text", ["99999999999999999999999d", "1" + "0" * 400 + "ms", "9" * 30 + "w"]
)
def test_parse_duration_overflow_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration(text)


def test_list_skip_beyond_64_bits(store: str) -> None:
    ok_json("start", "order", "--app", APP, "--url", store)
    result = wfe("list", "--url", store, "--skip", str(2**64))
    refused(result, "--skip", "9223372036854775807")
    assert ok_json("list", "--url", store, "--skip", str(2**63 - 1))["workflows"] == []


# --------------------------------------------------------------------------------------
# --queue-url / --lock-url / --lifecycle-url on commands that write
# --------------------------------------------------------------------------------------

WRITING_COMMANDS = ["start", "publish", "suspend", "resume", "terminate", "worker"]


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_writing_commands_take_the_service_urls(command: str) -> None:
    result = wfe(command, "--help")
    assert result.exit_code == 0
    for option, env in (
        ("--queue-url", "WFE_QUEUE_URL"),
        ("--lock-url", "WFE_LOCK_URL"),
        ("--lifecycle-url", "WFE_LIFECYCLE_URL"),
    ):
        assert option in result.stdout
        assert env in result.stdout


@pytest.fixture
def redis_queue() -> Iterator[str]:
    """A Redis URL with a key prefix of its own; its keys are deleted afterwards."""
    import redis
    from wfe_conformance.services import redis_url

    base = redis_url()
    prefix = f"wfe-cli-test:{uuid.uuid4().hex[:12]}:"
    parts = urlsplit(base)
    query = "&".join(q for q in (parts.query, f"prefix={prefix}") if q)
    yield urlunsplit(parts._replace(query=query))
    with redis.Redis.from_url(base, socket_timeout=2, socket_connect_timeout=2) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)


async def _take(url: str, queue: QueueType) -> list[str]:
    """Everything waiting in ``queue`` on the Redis queue at ``url``."""
    from wfe_redis import RedisQueueProvider

    provider = RedisQueueProvider(url)
    await provider.start()
    try:
        taken: list[str] = []
        while (item := await provider.dequeue_work(queue, 0.5)) is not None:
            taken.append(item)
        return taken
    finally:
        await provider.stop()


def test_start_publish_and_resume_queue_on_the_queue_url(
    store: str, tmp_path: Path, redis_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --queue-url (or WFE_QUEUE_URL) the hint goes to that queue, where workers
    using it read it, and no row is left in the store's own queue table."""
    db = tmp_path / "store.db"
    wid = ok_json("start", "order", "--app", APP, "--url", store, "--queue-url", redis_queue)["id"]
    assert asyncio.run(_take(redis_queue, QueueType.WORKFLOW)) == [wid]
    assert rows(db, "SELECT queue, item FROM wfe_queue") == []

    event = ok_json("publish", "payment", "K", "--url", store, "--queue-url", redis_queue)["id"]
    assert asyncio.run(_take(redis_queue, QueueType.EVENT)) == [event]
    assert rows(db, "SELECT queue, item FROM wfe_queue") == []

    monkeypatch.setenv("WFE_QUEUE_URL", redis_queue)
    ok_json("suspend", wid, "--url", store)
    assert ok_json("resume", wid, "--url", store)["changed"] is True
    assert asyncio.run(_take(redis_queue, QueueType.WORKFLOW)) == [wid]
    assert rows(db, "SELECT queue, item FROM wfe_queue") == []


def test_a_bad_queue_url_is_named(store: str) -> None:
    result = wfe("start", "order", "--app", APP, "--url", store, "--queue-url", "nosuch://x")
    refused(result, "--queue-url", "'nosuch'")
    result = wfe("publish", "e", "k", "--url", store, "--lock-url", "memory://")
    assert result.exit_code == 2
    assert "--lock-url" in result.stderr


# --------------------------------------------------------------------------------------
# list / show read a store another process holds the write lock on
# --------------------------------------------------------------------------------------


@pytest.fixture
def hold_write_lock() -> Iterator[Callable[[Path], None]]:
    """``hold(path)``: another process takes the write lock on the SQLite file with an
    uncommitted write and keeps it until the test ends."""
    held: list[subprocess.Popen[str]] = []
    code = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "db.execute('DELETE FROM wfe_workflows')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
        "db.execute('ROLLBACK')\n"
    )

    def hold(path: Path) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        held.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"  # bounded: the process ends

    yield hold
    for proc in held:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def test_list_and_show_read_while_another_process_holds_the_write_lock(
    tmp_path: Path, hold_write_lock: Callable[[Path], None]
) -> None:
    store = "sqlite:///store.db?busy_timeout=0.3"
    wid = ok_json("start", "order", "--app", APP, "--url", store, "--reference", "R-1")["id"]
    hold_write_lock(tmp_path / "store.db")
    listed = ok_json("list", "--url", store)
    assert [w["id"] for w in listed["workflows"]] == [wid]
    table = wfe("list", "--url", store)
    assert table.exit_code == 0, table.stderr
    assert wid in table.stdout
    shown = ok_json("show", wid, "--url", store)
    assert shown["reference"] == "R-1"
    assert wfe("show", wid, "--url", store).exit_code == 0
    # writing still waits for the lock, and says so
    blocked = wfe("start", "order", "--app", APP, "--url", store)
    assert blocked.exit_code == 1
    assert "busy_timeout" in blocked.stderr


def test_list_on_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    """Where the read-only open finds no store, list opens it as before (empty)."""
    result = ok_json("list", "--url", "sqlite:///new.db")
    assert result["workflows"] == []
    missing = wfe("show", "nope", "--url", "sqlite:///new.db")
    assert missing.exit_code == 1
    assert "workflow instance 'nope' does not exist in the store" in missing.stderr
