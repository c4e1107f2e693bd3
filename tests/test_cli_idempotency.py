"""``wfe start --idempotency-key`` and ``wfe publish --event-id``: running a command
again (a retried script, a replayed webhook) starts or publishes nothing more and
prints the same id; reusing a key or id for something else is a clear error; ``wfe
show`` and ``wfe list --json`` show the key. Each test uses its own SQLite file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli

APP = "wfe_core.demo:workflows"
DATA = '{"order_id": "K-1", "amount": "12.50"}'


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WFE_URL", "WFE_APP", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def wfe(*args: str) -> Result:
    """Run ``wfe ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_start_with_an_idempotency_key_twice_starts_once(url: str) -> None:
    """The second start prints the first id; one instance; show and list show the key."""
    first = ok_json(
        "start", "order", "--app", APP, "--url", url, "--data", DATA, "--idempotency-key", "K-1"
    )
    again = ok_json(
        "start", "order", "--app", APP, "--url", url, "--data", DATA, "--idempotency-key", "K-1"
    )
    assert again["id"] == first["id"]
    assert first["idempotency_key"] == "K-1"
    listed = ok_json("list", "--url", url)
    rows = listed["workflows"]
    assert [row["id"] for row in rows] == [first["id"]]
    assert rows[0]["idempotency_key"] == "K-1"
    shown = ok_json("show", first["id"], "--url", url, "--app", APP)
    assert shown["idempotency_key"] == "K-1"
    text = wfe("show", first["id"], "--url", url, "--app", APP)
    assert text.exit_code == 0, text.stderr
    assert "idempotency key" in text.stdout
    assert "K-1" in text.stdout
    plain = wfe("start", "order", "--app", APP, "--url", url, "--data", DATA)
    assert plain.exit_code == 0, plain.stderr
    assert "idempotency_key" not in ok_json("start", "order", "--app", APP, "--url", url)


def test_start_with_a_reused_key_and_other_data_fails_clearly(url: str) -> None:
    """Other data under a taken key is refused naming the instance holding it."""
    first = ok_json(
        "start", "order", "--app", APP, "--url", url, "--data", DATA, "--idempotency-key", "K-2"
    )
    other = wfe(
        "start",
        "order",
        "--app",
        APP,
        "--url",
        url,
        "--data",
        '{"order_id": "K-2", "amount": "99"}',
        "--idempotency-key",
        "K-2",
    )
    assert other.exit_code == 1
    assert first["id"] in other.stderr
    assert "IdempotencyKeyConflict" in other.stderr
    empty = wfe("start", "order", "--app", APP, "--url", url, "--idempotency-key", "")
    assert empty.exit_code == 2
    assert "--idempotency-key" in empty.stderr


def test_publish_with_an_event_id_twice_stores_once(url: str) -> None:
    """The second publish prints the same id; another name under the id is refused."""
    first = ok_json("publish", "paid", "K-3", "--url", url, "--event-id", "hook-7")
    again = ok_json("publish", "paid", "K-3", "--url", url, "--event-id", "hook-7")
    assert first["id"] == again["id"] == "hook-7"
    other = wfe("publish", "refunded", "K-3", "--url", url, "--event-id", "hook-7")
    assert other.exit_code == 1
    assert "EventIdConflict" in other.stderr
    too_long = wfe("publish", "paid", "K-3", "--url", url, "--event-id", "x" * 201)
    assert too_long.exit_code == 2
    assert "--event-id" in too_long.stderr


def test_start_with_an_execution_timeout_stores_the_deadline(url: str) -> None:
    """``--execution-timeout`` stores a deadline that far after the start; bad values
    are refused before anything is written."""
    from datetime import datetime, timedelta

    started = ok_json(
        "start", "order", "--app", APP, "--url", url, "--data", DATA, "--execution-timeout", "3d"
    )
    deadline = datetime.fromisoformat(started["execution_deadline"])
    left = deadline - datetime.now(deadline.tzinfo)
    assert timedelta(days=3) - timedelta(minutes=5) < left <= timedelta(days=3)
    for bad in ("0s", "soon", "-1h"):
        result = wfe("start", "order", "--app", APP, "--url", url, "--execution-timeout", bad)
        assert result.exit_code == 2, (bad, result.stdout)
        assert "--execution-timeout" in result.stderr
    assert len(ok_json("list", "--url", url)["workflows"]) == 1
