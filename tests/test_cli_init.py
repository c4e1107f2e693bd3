"""``wfe init``: the config it writes, ``.gitignore``, refusing to overwrite, and the
"done when" of the issue: ``wfe init`` in an empty folder, then ``wfe demo`` works and
``wfe list`` reads the store the file names. Also the worker Dockerfile of
wfe_core/README.md: checked in every run, built with ``docker build`` only when
``WFE_DOCKER_TESTS=1`` (so CI, which never sets it, never sees a skip).

Every test runs in its own empty ``tmp_path`` (with a ``.git`` folder, so no config
above it applies) with every ``WFE_*`` variable removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from wfe_core.cli import cli
from wfe_core.cli.config import KEYS, load_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "wfe_core" / "README.md"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WFE_") and name != "WFE_DOCKER_TESTS":
            monkeypatch.delenv(name)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


def wfe(*args: str) -> Result:
    """``wfe ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_init_in_an_empty_folder(tmp_path: Path) -> None:
    result = wfe("init")
    assert result.exit_code == 0, result.stderr
    config = tomllib.loads((tmp_path / "wfe.toml").read_text())
    assert config == {"url": "sqlite:///wfe.db"}  # everything else is a commented line
    text = (tmp_path / "wfe.toml").read_text()
    for key, spec in KEYS.items():
        if key != "url":
            assert re.search(rf"^# {key} = .*# {spec.env}$", text, re.M), key
    # every commented line, uncommented, is a valid config
    uncommented = "\n".join(
        line[2:] for line in text.splitlines() if re.match(r"# [a-z_]+ = ", line)
    )
    (tmp_path / "all.toml").write_text(uncommented)
    assert set(load_config(tmp_path / "all.toml").values) == set(KEYS) - {"url"}
    assert (tmp_path / ".gitignore").read_text() == "wfe.db\nwfe.db-wal\nwfe.db-shm\n"
    assert "wrote wfe.toml" in result.stdout
    assert "wfe demo" in result.stdout
    assert "wfe worker --app" in result.stdout


def test_init_with_url_and_app(tmp_path: Path) -> None:
    result = wfe("init", "--url", "sqlite:///data/orders.db", "--app", "shop.flows:workflows")
    assert result.exit_code == 0, result.stderr
    config = tomllib.loads((tmp_path / "wfe.toml").read_text())
    assert config == {"url": "sqlite:///data/orders.db", "app": "shop.flows:workflows"}
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines == ["data/orders.db", "data/orders.db-wal", "data/orders.db-shm"]
    assert "  wfe worker " in result.stdout
    assert "--app" not in result.stdout


def test_init_for_a_server_store_leaves_gitignore_alone(tmp_path: Path) -> None:
    result = wfe("init", "--url", "postgresql://wfe@db.example/wfe")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / ".gitignore").exists()
    assert tomllib.loads((tmp_path / "wfe.toml").read_text())["url"].startswith("postgresql:")


def test_gitignore_lines_are_never_duplicated(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("__pycache__/\n/wfe.db")  # no final newline
    assert wfe("init").exit_code == 0
    assert wfe("init", "--force").exit_code == 0
    assert (tmp_path / ".gitignore").read_text() == (
        "__pycache__/\n/wfe.db\nwfe.db-wal\nwfe.db-shm\n"
    )


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "wfe.toml").write_text('url = "memory://"\n')
    refused = wfe("init", "--url", "sqlite:///other.db")
    assert refused.exit_code == 1
    assert "wfe.toml already exists; pass --force" in refused.stderr
    assert (tmp_path / "wfe.toml").read_text() == 'url = "memory://"\n'
    forced = wfe("init", "--url", "sqlite:///other.db", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert tomllib.loads((tmp_path / "wfe.toml").read_text())["url"] == "sqlite:///other.db"


def test_init_refuses_to_shadow_tool_wfe(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.wfe]\nurl = "memory://"\n')
    refused = wfe("init")
    assert refused.exit_code == 1
    assert "already has [tool.wfe]" in refused.stderr
    assert not (tmp_path / "wfe.toml").exists()


def test_init_pyproject_appends_and_replaces_only_its_table(tmp_path: Path) -> None:
    original = (
        '[project]\nname = "shop"\n\n[tool.wfe]\nurl = "memory://"\n\n'
        "[tool.ruff]\nline-length = 99\n"
    )
    (tmp_path / "pyproject.toml").write_text(original)
    refused = wfe("init", "--pyproject")
    assert refused.exit_code == 1
    assert "already has [tool.wfe]" in refused.stderr
    assert (tmp_path / "pyproject.toml").read_text() == original
    assert wfe("init", "--pyproject", "--force", "--app", "shop:flows").exit_code == 0
    document = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert document["project"] == {"name": "shop"}
    assert document["tool"]["ruff"] == {"line-length": 99}
    assert document["tool"]["wfe"] == {"url": "sqlite:///wfe.db", "app": "shop:flows"}
    assert not (tmp_path / "wfe.toml").exists()
    assert (tmp_path / "pyproject.toml").read_text().startswith('[project]\nname = "shop"\n')


def test_init_pyproject_needs_a_pyproject(tmp_path: Path) -> None:
    result = wfe("init", "--pyproject")
    assert result.exit_code == 1
    assert "there is no pyproject.toml in this folder" in result.stderr


def test_init_pyproject_adds_a_table_to_a_file_without_one(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"')
    assert wfe("init", "--pyproject").exit_code == 0
    document = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert document == {"project": {"name": "shop"}, "tool": {"wfe": {"url": "sqlite:///wfe.db"}}}


def test_init_rejects_bad_values(tmp_path: Path) -> None:
    bad_url = wfe("init", "--url", "just-a-path.db")
    assert bad_url.exit_code == 2
    assert "--url" in bad_url.stderr
    bad_app = wfe("init", "--app", "no_colon")
    assert bad_app.exit_code == 2
    assert "is not module:attr" in bad_app.stderr
    assert not (tmp_path / "wfe.toml").exists()


def test_init_then_demo_works_and_list_reads_the_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's "done when": init in an empty folder, then `wfe demo`."""
    assert wfe("init", "--url", "sqlite:///project.db").exit_code == 0
    demo = wfe("demo", "--orders", "3", "--payment-window", "1", "--json")
    assert demo.exit_code == 0, demo.stderr
    ran = json.loads(demo.stdout)
    assert ran["url"] == "sqlite:///project.db"
    assert (tmp_path / "project.db").exists()
    assert not (tmp_path / "wfe.db").exists()
    ids = {o["workflow_id"] for o in ran["orders"]}
    listed = wfe("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert {w["id"] for w in json.loads(listed.stdout)["workflows"]} == ids
    # from a subfolder too: the relative path is the config file's
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    again = wfe("list", "--json")
    assert again.exit_code == 0, again.stderr
    assert {w["id"] for w in json.loads(again.stdout)["workflows"]} == ids


def test_init_then_demo_as_real_processes(tmp_path: Path) -> None:
    """The same with the installed ``wfe`` script, as a user types it."""
    exe = Path(sys.executable).with_name("wfe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    init = subprocess.run([exe, "init"], capture_output=True, text=True, env=env, timeout=60)
    assert init.returncode == 0, init.stderr
    demo = subprocess.run(
        [exe, "demo", "--orders", "3", "--payment-window", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "done in" in demo.stdout
    listed = subprocess.run(
        [exe, "list", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["workflows"]) == 3
    assert (tmp_path / "wfe.db").exists()


# -- the Dockerfile template ------------------------------------------------------------


def _readme_block(language: str, marker: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)
    found: list[str] = [b for b in blocks if marker in b]
    assert len(found) == 1, f"one ```{language} block with {marker!r} in {README}"
    return found[0]


def test_the_dockerfile_template_is_sound(tmp_path: Path) -> None:
    dockerfile = _readme_block("dockerfile", "FROM ")
    instructions = [
        line.split(None, 1)
        for line in dockerfile.replace("\\\n", " ").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = [i[0] for i in instructions]
    assert re.fullmatch(r"python:3\.1[1-9]-slim", instructions[0][1].strip())
    users = [i[1].strip() for i in instructions if i[0] == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN")
    assert instructions[-1] == ["CMD", '["wfe", "worker"]']
    assert any(i[0] == "VOLUME" and "/data" in i[1] for i in instructions)
    assert any("pip install" in i[1] and "wfe-core" in i[1] for i in instructions if i[0] == "RUN")
    # the wfe.toml shown with it is a valid config
    (tmp_path / "wfe.toml").write_text(_readme_block("toml", "/data/wfe.db"))
    config = load_config(tmp_path / "wfe.toml")
    assert config.values["url"] == "sqlite:////data/wfe.db"
    assert config.values["app"] == "myproject:workflows"


if os.environ.get("WFE_DOCKER_TESTS") == "1":  # never collected otherwise: no skip in CI

    def test_the_dockerfile_template_builds(tmp_path: Path) -> None:
        """Build the image from wheels of this workspace, then run ``wfe list`` in it:
        the config in the image is read and the store on the volume opens."""
        docker = shutil.which("docker")
        if (
            docker is None
            or subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode
        ):
            pytest.skip("WFE_DOCKER_TESTS=1 but the Docker daemon does not answer (docker info)")
        uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
        context = tmp_path / "context"
        (context / "wheels").mkdir(parents=True)
        for package in ("wfe-core", "wfe-sql", "wfe-sqlite"):
            subprocess.run(
                [uv, "build", "--wheel", "--package", package, "-o", str(context / "wheels")],
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=600,
            )
        (context / "Dockerfile").write_text(_readme_block("dockerfile", "FROM "))
        (context / "wfe.toml").write_text(_readme_block("toml", "/data/wfe.db"))
        (context / "myproject").mkdir()
        (context / "myproject" / "__init__.py").write_text("from wfe_core.demo import workflows\n")
        tag = f"wfe-worker-test:{uuid.uuid4().hex[:12]}"
        built = subprocess.run(
            [docker, "build", "-t", tag, str(context)], capture_output=True, text=True, timeout=1200
        )
        assert built.returncode == 0, built.stderr[-4000:]
        try:
            listed = subprocess.run(
                [docker, "run", "--rm", tag, "wfe", "list", "--json"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert listed.returncode == 0, listed.stderr
            assert json.loads(listed.stdout)["workflows"] == []
            user = subprocess.run(
                [docker, "run", "--rm", tag, "id", "-u"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert user.stdout.strip() == "10001"
        finally:
            subprocess.run([docker, "rmi", "-f", tag], capture_output=True, timeout=300)
