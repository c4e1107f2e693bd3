"""The project config (``wfe.toml`` / ``[tool.wfe]``): where it is found, the order
flag > environment > file > default for every kind of setting, and bad files.

Every test runs in its own ``tmp_path`` (a ``.git`` folder in it stops the search, so
nothing above it applies) with every ``WFE_*`` variable removed."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli
from wfe_core.cli.config import KEYS, discover
from wfe_core.cli.worker import worker

APP = "wfe_core.demo:workflows"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WFE_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))


def wfe(*args: str) -> Result:
    """``wfe ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def group_params(*args: str) -> dict[str, object]:
    """The ``wfe`` group's parsed options for ``args`` (its --config callback runs)."""
    ctx = cli.make_context("wfe", [*args, "list"])
    return dict(ctx.params)


def worker_params(*args: str, group: tuple[str, ...] = ()) -> dict[str, object]:
    """``wfe worker``'s parsed options (defaults from the config through default_map)."""
    parent = cli.make_context("wfe", [*group, "worker"])
    return dict(worker.make_context("worker", list(args), parent=parent).params)


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# -- discovery ------------------------------------------------------------------------


def test_no_config_is_the_built_in_default(tmp_path: Path) -> None:
    assert discover() is None
    assert group_params()["url"] == "sqlite:///wfe.db"
    assert worker_params()["concurrency"] is None


def test_wfe_toml_in_a_parent_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "wfe.toml", 'url = "memory://"\nconcurrency = 7\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    found = discover()
    assert found is not None
    assert found.path == tmp_path / "wfe.toml"
    assert group_params()["url"] == "memory://"
    assert worker_params()["concurrency"] == 7


def test_the_search_stops_at_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "wfe.toml", 'url = "memory://"\n')
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert discover() is None  # a config above the repository never applies
    assert group_params()["url"] == "sqlite:///wfe.db"


def test_pyproject_tool_wfe_and_a_pyproject_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.wfe]\nurl = "memory://"\n')
    member = tmp_path / "member"
    write(member / "pyproject.toml", '[project]\nname = "member"\n')  # no [tool.wfe]
    monkeypatch.chdir(member)
    found = discover()
    assert found is not None
    assert found.path == tmp_path / "pyproject.toml"
    assert group_params()["url"] == "memory://"


def test_wfe_toml_wins_over_tool_wfe_in_the_same_folder_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.wfe]\nurl = "sqlite:///from_pyproject.db"\n')
    write(tmp_path / "wfe.toml", 'url = "sqlite:///from_wfe_toml.db"\n')
    result = wfe("list", "--json")
    assert result.exit_code == 0, result.stderr
    assert "[tool.wfe] in" in result.stderr
    assert "is ignored" in result.stderr
    assert (tmp_path / "from_wfe_toml.db").exists()
    assert not (tmp_path / "from_pyproject.db").exists()


def test_config_option_and_variable_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "wfe.toml", 'url = "sqlite:///nearest.db"\n')
    other = write(tmp_path / "conf" / "prod.toml", 'url = "memory://"\n')
    assert group_params("--config", str(other))["url"] == "memory://"
    monkeypatch.setenv("WFE_CONFIG", str(other))
    assert group_params()["url"] == "memory://"
    pyproject = write(tmp_path / "conf" / "pyproject.toml", '[tool.wfe]\nurl = "memory://p"\n')
    assert group_params("--config", str(pyproject))["url"] == "memory://p"
    missing = wfe("--config", str(tmp_path / "nope.toml"), "list")
    assert missing.exit_code == 2
    assert "nope.toml does not exist" in missing.stderr


def test_a_relative_sqlite_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "wfe.toml", f'url = "sqlite:///store.db"\napp = "{APP}"\n')
    assert wfe("start", "order").exit_code == 0
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    listed = wfe("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert "order" in listed.stdout
    assert not (sub / "store.db").exists()


# -- precedence: flag > environment > file > default ------------------------------------


def test_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "wfe.toml", 'url = "sqlite:///file.db"\n')
    assert group_params()["url"] == "sqlite:///file.db"
    monkeypatch.setenv("WFE_URL", "sqlite:///env.db")
    assert group_params()["url"] == "sqlite:///env.db"
    assert group_params("--url", "sqlite:///flag.db")["url"] == "sqlite:///flag.db"
    # and for real: the store each one names is the one written
    monkeypatch.delenv("WFE_URL")
    for args, env, db in (
        ((), None, "file.db"),
        ((), "sqlite:///env.db", "env.db"),
        (("--url", "sqlite:///flag.db"), "sqlite:///env.db", "flag.db"),
    ):
        if env:
            monkeypatch.setenv("WFE_URL", env)
        result = wfe(*args, "start", "order", "--app", APP)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / db).exists(), db
    # a command's own --url wins over everything
    assert wfe("start", "order", "--app", APP, "--url", "sqlite:///own.db").exit_code == 0
    assert (tmp_path / "own.db").exists()


def test_app_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "wfe.toml", 'url = "sqlite:///s.db"\napp = "no_such_module_here:x"\n')
    from_file = wfe("start", "order")
    assert from_file.exit_code == 2
    assert "no_such_module_here" in from_file.stderr  # the file's app was used
    monkeypatch.setenv("WFE_APP", APP)
    assert wfe("start", "order").exit_code == 0  # the variable wins over the file
    monkeypatch.setenv("WFE_APP", "no_such_module_either:x")
    assert wfe("start", "order", "--app", APP).exit_code == 0  # the flag wins over both
    assert worker_params("--app", "a:b")["app"] == "a:b"


def test_namespace_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "ns.db"
    write(tmp_path / "wfe.toml", f'url = "sqlite:///ns.db"\napp = "{APP}"\nnamespace = "file"\n')
    assert wfe("start", "order").exit_code == 0
    assert any(t.startswith("wfe_file__") for t in tables(db))
    monkeypatch.setenv("WFE_NAMESPACE", "env")
    assert wfe("start", "order").exit_code == 0
    assert any(t.startswith("wfe_env__") for t in tables(db))
    assert wfe("--namespace", "flag", "start", "order").exit_code == 0
    assert any(t.startswith("wfe_flag__") for t in tables(db))
    # the URL's ?namespace= wins over the file's (as over WFE_NAMESPACE)
    monkeypatch.delenv("WFE_NAMESPACE")
    assert wfe("start", "order", "--url", "sqlite:///ns.db?namespace=inurl").exit_code == 0
    assert any(t.startswith("wfe_inurl__") for t in tables(db))
    # `wfe list` in the file's namespace sees exactly the one started there
    listed = wfe("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.count('"definition"') == 1


def test_worker_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "wfe.toml",
        'concurrency = 3\npoll_interval = 2\nlog_level = "info"\nlog_format = "json"\n'
        'steps = false\nmetrics_port = 9000\notel = true\nqueue_url = "memory://q"\n',
    )
    params = worker_params()
    assert params["concurrency"] == 3
    assert params["poll_interval"] == 2.0
    assert params["log_level"] == "info"
    assert params["log_format"] == "json"
    assert params["steps"] is False
    assert params["metrics_port"] == 9000
    assert params["otel"] is True
    assert params["queue_url"] == "memory://q"
    monkeypatch.setenv("WFE_CONCURRENCY", "5")
    monkeypatch.setenv("WFE_LOG_LEVEL", "error")
    monkeypatch.setenv("WFE_QUEUE_URL", "memory://env")
    params = worker_params()
    assert (params["concurrency"], params["log_level"]) == (5, "error")
    assert params["queue_url"] == "memory://env"
    from wfe_core.cli.dashboard import dashboard

    board = dashboard.make_context("dashboard", [], parent=cli.make_context("wfe", ["dashboard"]))
    assert board.params["poll_interval"] == 1.0  # the worker's keys reach the worker only
    params = worker_params("--concurrency", "9", "--steps", "--queue-url", "memory://flag")
    assert (params["concurrency"], params["steps"], params["queue_url"]) == (
        9,
        True,
        "memory://flag",
    )


def test_every_configurable_option_declares_its_variable() -> None:
    """A key the file sets must be overridable from the environment (flag > env > file),
    so every option it reaches declares the variable the docs name."""
    seen: set[str] = set()

    def walk(command: click.Command) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                if name != "init":
                    walk(sub)
            return
        for param in command.params:
            spec = KEYS.get(param.name or "")
            if spec is None or param.name in ("url", "namespace"):
                continue
            if spec.commands is None or command.name in spec.commands:
                seen.add(spec.env)
                assert param.envvar == spec.env, (command.name, param.name)

    walk(cli)
    assert seen == {k.env for name, k in KEYS.items() if name not in ("url", "namespace")}


# -- bad files ------------------------------------------------------------------------


def test_unknown_key_names_the_key_and_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.wfe]\nconcurency = 3\n")
    result = wfe("list")
    assert result.exit_code == 2
    assert "unknown key 'concurency'" in result.stderr
    assert "[tool.wfe] in" in result.stderr
    assert "pyproject.toml" in result.stderr
    assert "did you mean 'concurrency'?" in result.stderr
    assert "known keys: url, namespace, app" in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('concurrency = "many"', "concurrency in {path} must be an integer, not str 'many'"),
        ("url = 5", "url in {path} must be a string, not int 5"),
        ("steps = 1", "steps in {path} must be true or false, not int 1"),
        ("metrics_port = 70000", "metrics_port in {path}: 70000 is not in the range"),
        ('log_level = "loud"', "log_level in {path}: 'loud' is not one of"),
        ('namespace = "Bad-Name"', "namespace in {path} 'Bad-Name' is not a valid namespace"),
        ("url = [", "{path} is not valid TOML"),
    ],
)
def test_a_bad_value_names_the_key_and_the_file(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "wfe.toml", line + "\n")
    result = wfe("list")
    assert result.exit_code == 2
    assert message.format(path=path) in result.stderr


def test_tool_wfe_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool]\nwfe = "x"\n')
    result = wfe("list")
    assert result.exit_code == 2
    assert "tool.wfe in" in result.stderr
    assert "must be a table" in result.stderr


def test_help_and_init_work_with_a_broken_config(tmp_path: Path) -> None:
    write(tmp_path / "wfe.toml", "nonsense = 1\n")
    assert wfe("--help").exit_code == 0
    fixed = wfe("init", "--force")
    assert fixed.exit_code == 0, fixed.stderr
    assert wfe("list").exit_code == 0
