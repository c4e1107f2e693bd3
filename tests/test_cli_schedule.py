"""``wfe schedule add|list|pause|resume|delete``: output, ``--json`` and bad input
(a clear message, a non-zero exit, nothing written)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli

APP = "wfe_core.demo:workflows"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_URL", raising=False)
    monkeypatch.delenv("WFE_APP", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def wfe(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _rows(url: str) -> list[Any]:
    path = url.removeprefix("sqlite:///")
    if not Path(path).exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT id FROM wfe_schedules").fetchall()
        except sqlite3.OperationalError:
            return []


def test_add_list_pause_resume_delete(url: str) -> None:
    """The whole life of a schedule through the command line, in text and JSON."""
    added = ok_json(
        "schedule", "add", "nightly", "order", "--cron", "30 2 * * *",
        "--timezone", "Europe/Berlin", "--data", '{"order_id": "A1"}',
        "--app", APP, "--url", url,
    )  # fmt: skip
    assert added["id"] == "nightly"
    assert added["cron"] == "30 2 * * *"
    assert added["timezone"] == "Europe/Berlin"
    assert added["overlap"] == "skip"
    assert len(added["next_fire_times"]) == 3
    text = wfe("schedule", "add", "often", "order", "--every", "15m", "--app", APP, "--url", url)
    assert text.exit_code == 0, text.output
    assert "schedule often added (every 0:15:00)" in text.output
    listed = ok_json("schedule", "list", "--url", url, "--next", "2")
    assert [s["id"] for s in listed] == ["nightly", "often"]
    assert all(len(s["next_fire_times"]) == 2 for s in listed)
    table = wfe("schedule", "list", "--url", url)
    assert table.exit_code == 0
    assert "nightly" in table.output
    assert "often" in table.output
    assert ok_json("schedule", "pause", "nightly", "--url", url)["changed"] is True
    again = wfe("schedule", "pause", "nightly", "--url", url)
    assert "already paused" in again.output
    assert [s["paused"] for s in ok_json("schedule", "list", "--url", url)] == [True, False]
    assert "resumed" in wfe("schedule", "resume", "nightly", "--url", url).output
    assert "deleted" in wfe("schedule", "delete", "nightly", "--url", url).output
    assert [s["id"] for s in ok_json("schedule", "list", "--url", url)] == ["often"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *"], "invalid cron expression '61 * * * *'"),
        (["--every", "0s"], "every must be a positive interval"),
        (["--every", "soon"], "soon"),
        (["--cron", "0 * * * *", "--timezone", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["--cron", "0 * * * *", "--every", "1h"], "exactly one of --cron"),
        ([], "exactly one of --cron"),
        (["--cron", "0 * * * *", "--overlap", "maybe"], "'maybe' is not one of"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(url: str, args: list[str], message: str) -> None:
    """Bad input: a message naming the problem, a non-zero exit, no schedule stored."""
    result = wfe("schedule", "add", "s", "order", *args, "--app", APP, "--url", url)
    assert result.exit_code != 0
    assert message in result.output
    assert _rows(url) == []


def test_taken_id_unknown_definition_and_unknown_id(url: str) -> None:
    """A taken id, an unregistered definition, an unknown id: clear errors."""
    base = ("schedule", "add", "s", "order", "--every", "1h", "--app", APP, "--url", url)
    assert wfe(*base).exit_code == 0
    taken = wfe(*base)
    assert taken.exit_code == 1
    assert "'s' exists already" in taken.output
    unknown = wfe("schedule", "add", "t", "nope", "--every", "1h", "--app", APP, "--url", url)
    assert unknown.exit_code == 2
    assert "'nope' is not registered" in unknown.output
    assert _rows(url) == [("s",)]
    no_app = wfe("schedule", "add", "t", "order", "--every", "1h", "--url", url)
    assert no_app.exit_code == 2
    assert "needs your workflow definitions" in no_app.output
    for action in ("pause", "resume", "delete"):
        missing = wfe("schedule", action, "ghost", "--url", url)
        assert missing.exit_code == 1
        assert "no schedule with id 'ghost'" in missing.output
