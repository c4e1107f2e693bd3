"""The CLI honours namespaces: ``wfe --namespace``, ``?namespace=`` in ``--url`` and
``WFE_NAMESPACE`` pick the namespace of every command, with the flag over the URL over
the environment; two namespaces on one store never see each other's workflows, events
or schedules; a bad name is refused naming the flag. Run on a SQLite file and on
PostgreSQL (a schema of its own)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli

APP = "wfe_core.demo:workflows"
DATA = '{"order_id": "N-1", "amount": "3.50"}'


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WFE_URL", "WFE_APP", "WFE_NAMESPACE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from wfe_conformance.services import postgres_url
    from wfe_postgres.testing import new_schema_name

    base = postgres_url()
    schema = new_schema_name()
    yield f"{base}?schema={schema}"
    anyio.run(_drop_schema, base, schema)


async def _drop_schema(base: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _with(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def wfe(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``wfe ARGS`` in process."""
    return CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)


def ok_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = wfe(*args, "--json", env=env)
    assert result.exit_code == 0, result.stderr or result.stdout
    return json.loads(result.stdout)


def listed(url: str, *flags: str, env: dict[str, str] | None = None) -> list[str]:
    rows = ok_json(*flags, "list", "--url", url, env=env)["workflows"]
    return [row["id"] for row in rows]


def test_each_namespace_sees_only_its_own_workflows(url: str) -> None:
    """A workflow started in one namespace is listed, shown and controlled there only;
    the same idempotency key starts a separate instance in another namespace."""
    start = ("start", "order", "--app", APP, "--url", url, "--data", DATA)
    a = ok_json("--namespace", "team_a", *start, "--idempotency-key", "K")["id"]
    b = ok_json("--namespace", "team_b", *start, "--idempotency-key", "K")["id"]
    assert a != b
    assert listed(url, "--namespace", "team_a") == [a]
    assert listed(url, "--namespace", "team_b") == [b]
    assert listed(url) == []  # the default namespace holds neither
    hidden = wfe("--namespace", "team_b", "show", a, "--url", url, "--app", APP)
    assert hidden.exit_code != 0
    assert a in (hidden.stderr + hidden.stdout)
    refused = wfe("--namespace", "team_b", "terminate", a, "--url", url)
    assert refused.exit_code != 0
    assert ok_json("--namespace", "team_a", "show", a, "--url", url, "--app", APP)["id"] == a


def test_the_flag_beats_the_url_which_beats_the_environment(url: str) -> None:
    """``--namespace`` over ``?namespace=`` over ``WFE_NAMESPACE``."""
    start = ("start", "order", "--app", APP, "--data", DATA)
    in_env = ok_json(*start, "--url", url, env={"WFE_NAMESPACE": "from_env"})["id"]
    in_url = ok_json(
        *start, "--url", _with(url, "namespace=from_url"), env={"WFE_NAMESPACE": "from_env"}
    )["id"]
    in_flag = ok_json(
        "--namespace",
        "from_flag",
        *start,
        "--url",
        _with(url, "namespace=from_url"),
        env={"WFE_NAMESPACE": "from_env"},
    )["id"]
    assert listed(url, "--namespace", "from_env") == [in_env]
    assert listed(_with(url, "namespace=from_url")) == [in_url]
    assert listed(url, env={"WFE_NAMESPACE": "from_flag"}) == [in_flag]
    assert listed(url) == []


def test_events_and_schedules_stay_in_their_namespace(url: str) -> None:
    """The same event id publishes once per namespace; a schedule is listed in its own
    namespace only."""
    publish = ("publish", "paid", "N-1", "--url", url, "--event-id", "evt-1")
    first = ok_json("--namespace", "team_a", *publish)
    second = ok_json("--namespace", "team_b", *publish)
    assert first["id"] == second["id"] == "evt-1"
    add = wfe(
        "--namespace",
        "team_a",
        "schedule",
        "add",
        "hourly",
        "order",
        "--url",
        url,
        "--app",
        APP,
        "--every",
        "1h",
    )
    assert add.exit_code == 0, add.stderr or add.stdout
    in_a = ok_json("--namespace", "team_a", "schedule", "list", "--url", url)
    in_b = ok_json("--namespace", "team_b", "schedule", "list", "--url", url)
    assert [s["id"] for s in in_a] == ["hourly"]
    assert in_b == []


@pytest.mark.parametrize("bad", ["Team-A", "a__b", "x" * 30])
def test_a_bad_namespace_is_refused_naming_the_flag(url: str, bad: str) -> None:
    result = wfe("--namespace", bad, "list", "--url", url)
    assert result.exit_code == 2
    assert "--namespace" in result.stderr
    assert bad in result.stderr


def test_a_bad_namespace_in_the_environment_is_refused(url: str) -> None:
    result = wfe("list", "--url", url, env={"WFE_NAMESPACE": "Bad Name"})
    assert result.exit_code != 0
    assert "WFE_NAMESPACE" in result.stderr


def test_the_demo_runs_in_the_namespace_given(url: str) -> None:
    """``wfe --namespace NAME demo`` places its orders in that namespace only."""
    result = wfe("--namespace", "demo_ns", "demo", "--url", url, "--json", "--orders", "3")
    assert result.exit_code == 0, result.stderr or result.stdout
    placed = {o["workflow_id"] for o in json.loads(result.stdout)["orders"]}
    assert len(placed) == 3
    assert set(listed(url, "--namespace", "demo_ns")) >= placed
    assert listed(url) == []
