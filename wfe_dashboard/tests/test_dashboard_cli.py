"""``wfe dashboard`` (the bind rule, the install hint, the store and namespace it
uses), :func:`wfe_dashboard.serve`'s refusal, and the timeline and value helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from wfe_core.cli import cli
from wfe_core.models import ExecutionPointer
from wfe_core.serialization import Undecodable
from wfe_dashboard.present import duration, pointer_tree, show_value

import wfe_dashboard
from wfe_dashboard import BindRefused, check_bind


def test_check_bind_rules() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(BindRefused, match="without a token"):
            check_bind(host, None)
        check_bind(host, "a-long-token")
    with pytest.raises(BindRefused, match="empty"):
        check_bind("127.0.0.1", "  ")


def test_serve_refuses_before_binding(tmp_path: Path) -> None:
    from wfe_core.client import WorkflowClient

    client = WorkflowClient.from_url(f"sqlite:///{tmp_path / 'wfe.db'}")
    with pytest.raises(BindRefused, match="--token"):
        wfe_dashboard.serve(client, host="0.0.0.0", port=1)


def test_cli_refuses_to_bind_everywhere_without_a_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--url", f"sqlite:///{tmp_path / 'wfe.db'}", "dashboard", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2
    assert "refusing to bind the dashboard to 0.0.0.0 without a token" in result.output
    assert "--token" in result.output


def test_cli_names_the_package_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wfe_dashboard", None)  # import fails as if absent
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == 1
    assert "pip install wfe-dashboard" in result.output


def test_cli_serves_the_groups_store_and_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(client: Any, **options: Any) -> None:
        seen["client"], seen["options"] = client, options

    monkeypatch.setattr(wfe_dashboard, "serve", fake_serve)
    db = tmp_path / "wfe.db"
    result = CliRunner().invoke(
        cli,
        [
            "--url",
            f"sqlite:///{db}",
            "--namespace",
            "team_a",
            "dashboard",
            "--host",
            "0.0.0.0",
            "--port",
            "9999",
            "--token",
            "t0k",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["client"].persistence.namespace == "team_a"
    assert seen["options"]["host"] == "0.0.0.0"
    assert seen["options"]["port"] == 9999
    assert seen["options"]["token"] == "t0k"
    env = CliRunner().invoke(
        cli, ["dashboard", "--host", "10.0.0.1"], env={"WFE_DASHBOARD_TOKEN": "from-env"}
    )
    assert env.exit_code == 0, env.output
    assert seen["options"]["token"] == "from-env"


def test_pointer_tree_nests_paths_and_keeps_every_pointer() -> None:
    start = ExecutionPointer(step_id=0, step_name="start")
    loop = ExecutionPointer(step_id=1, step_name="loop", predecessor_id=start.id)
    it1 = ExecutionPointer(step_id=2, step_name="body", scope=[loop.id], predecessor_id=loop.id)
    it1b = ExecutionPointer(step_id=3, step_name="after", scope=[loop.id], predecessor_id=it1.id)
    it2 = ExecutionPointer(step_id=2, step_name="body", scope=[loop.id], predecessor_id=loop.id)
    inner = ExecutionPointer(
        step_id=4, step_name="inner", scope=[it2.id, loop.id], predecessor_id=it2.id
    )
    orphan = ExecutionPointer(step_id=9, step_name="orphan", scope=["gone"])
    end = ExecutionPointer(step_id=5, step_name="end", predecessor_id=loop.id)
    loop.children = [it1.id, it2.id]
    it2.children = [inner.id]
    tree = pointer_tree([start, loop, it1, it2, it1b, inner, end, orphan])
    assert [n.name for n in tree] == ["start", "loop", "end", "orphan"]
    paths = tree[1].paths
    assert [[n.name for n in path] for path in paths] == [["body", "after"], ["body"]]
    assert [n.name for n in paths[1][0].paths[0]] == ["inner"]
    assert [n.number for n in tree] == [1, 2, 7, 8]


def test_show_value_pretty_prints_and_marks_raw_values() -> None:
    assert show_value({"b": [1, 2]}).text == '{\n  "b": [\n    1,\n    2\n  ]\n}'
    raw = show_value(Undecodable(raw='{"$wfe": "x", "v": 1}', reason="type x unknown"))
    assert raw.raw
    assert raw.reason == "type x unknown"
    assert '"$wfe": "x"' in raw.text
    assert show_value(Undecodable(raw="not json", reason="r")).text == "not json"


def test_duration_formats() -> None:
    from datetime import UTC, datetime, timedelta

    t = datetime(2024, 1, 1, tzinfo=UTC)
    assert duration(t, t + timedelta(seconds=1.5)) == "1.500s"
    assert duration(t, t + timedelta(minutes=2, seconds=3)) == "2m 03s"
    assert duration(t, t + timedelta(hours=3, minutes=4)) == "3h 04m"
    assert duration(t, t + timedelta(days=3, hours=1)) == "3d 01h"
    assert duration(None, t) == ""
