"""The commands that need no ``--app`` work on a store holding data of types the CLI
cannot import: suspend / resume / terminate and purge change or delete such an
instance, publish works beside such an event, and show prints such an event raw.

The stored values name a class (``elsewhere.Unknown``) no process here can import, so
no type registered earlier in this process can decode them.
"""

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
UNKNOWN = {"$wfe": "dataclass", "t": "elsewhere.Unknown", "v": {"name": "n-1"}}
"""A stored value of a type nobody here can import."""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WFE_URL", "WFE_APP", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def url(db: Path) -> str:
    return f"sqlite:///{db}"


def wfe(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _rewrite(db: Path, table: str, column: str, row_id: str) -> None:
    with sqlite3.connect(db) as conn:
        changed = conn.execute(
            f"UPDATE {table} SET {column} = ? WHERE id = ?", (json.dumps(UNKNOWN), row_id)
        ).rowcount
    assert changed == 1


def _unknown_instance(url: str, db: Path) -> str:
    """An instance whose data is of a type nobody here can import."""
    wid = ok_json("start", "order", "--app", APP, "--url", url)["id"]
    _rewrite(db, "wfe_workflows", "data", wid)
    shown = ok_json("show", wid, "--url", url)
    assert shown["data"] == UNKNOWN
    return str(wid)


def test_suspend_resume_terminate_without_app_keep_data_of_an_unknown_type(
    url: str, db: Path
) -> None:
    wid = _unknown_instance(url, db)
    for action, status in (
        ("suspend", "suspended"),
        ("resume", "runnable"),
        ("terminate", "terminated"),
    ):
        done = ok_json(action, wid, "--url", url)
        assert (done["changed"], done["status"]) == (True, status), done
        shown = ok_json("show", wid, "--url", url)
        assert shown["status"] == status
        assert shown["data"] == UNKNOWN  # written back as it was stored
        assert [u["field"] for u in shown["undecodable"]] == ["data"]
    table = wfe("terminate", wid, "--url", url)
    assert table.exit_code == 1
    assert "was not terminated: it is terminated" in table.stderr


def test_purge_without_app_deletes_an_instance_of_an_unknown_type(url: str, db: Path) -> None:
    wid = _unknown_instance(url, db)
    keep = _unknown_instance(url, db)
    ok_json("terminate", wid, "--url", url)
    purged = ok_json("purge", "--status", "terminated", "--older-than", "0s", "--url", url)
    assert purged["purged"] == 1
    assert wfe("show", wid, "--url", url).exit_code == 1
    listed = ok_json("list", "--url", url)
    assert [w["id"] for w in listed["workflows"]] == [keep]


def test_publish_without_app_beside_an_event_of_an_unknown_type(url: str, db: Path) -> None:
    _unknown_instance(url, db)
    first = ok_json("publish", "payment", "K-1", "--url", url, "--data", '{"amount": 1}')["id"]
    _rewrite(db, "wfe_events", "event_data", first)
    second = ok_json("publish", "payment", "K-2", "--url", url, "--data", '{"amount": 2}')
    assert second["data"] == {"amount": 2}
    raw = ok_json("show", first, "--url", url)
    assert raw["kind"] == "event"
    assert raw["data"] == UNKNOWN
    assert [(u["field"], u["note"]) for u in raw["undecodable"]] == [
        ("event_data", "raw: type not registered here")
    ]
    assert ok_json("show", second["id"], "--url", url)["data"] == {"amount": 2}
    text = wfe("show", first, "--url", url)
    assert text.exit_code == 0, text.stderr
    assert "(raw: type not registered here)" in text.stdout
    assert "elsewhere.Unknown" in text.stdout
