"""``wfe definitions load|list|show``: documents checked before they are stored, the
store's versions listed and shown, on SQLite and (with ``WFE_TEST_POSTGRES_URL``)
PostgreSQL in a namespace of the test's own."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from wfe_conformance.scenarios.stored_definitions import COUNTER_JSON, COUNTER_YAML
from wfe_core.cli import cli

APP_MODULE = """
from wfe_conformance.scenarios.stored_definitions import definition_registry

registry = definition_registry()


def register(host):
    host.definition_registry = registry
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WFE_URL", "WFE_APP", "WFE_NAMESPACE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "flows.json").write_text(COUNTER_JSON)
    (tmp_path / "flows.yaml").write_text(COUNTER_YAML)
    (tmp_path / "defs_app.py").write_text(APP_MODULE)


def _postgres_url() -> str:
    base = os.environ.get("WFE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("WFE_TEST_POSTGRES_URL is not set")
    namespace = "d" + uuid.uuid4().hex[:12]
    return f"{base}{'&' if '?' in base else '?'}namespace={namespace}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return _postgres_url()


def wfe(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok_json(*args: str) -> Any:
    result = wfe(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_load_list_show(url: str) -> None:
    """Documents are stored with their versions, listed and shown, in text and JSON;
    loading the same file again changes nothing."""
    loaded = wfe("definitions", "load", "flows.json", "--url", url)
    assert loaded.exit_code == 0, loaded.output
    assert loaded.output.startswith("definition stored-json v1 stored in ")
    again = wfe("definitions", "load", "flows.json", "--url", url)
    assert "was already stored" in again.output
    made = ok_json("definitions", "load", "flows.yaml", "--url", url)
    assert (made["id"], made["version"], made["format"], made["stored"]) == (
        "stored-yaml",
        1,
        "yaml",
        True,
    )
    listed = ok_json("definitions", "list", "--url", url)
    assert [(d["id"], d["version"], d["format"]) for d in listed] == [
        ("stored-json", 1, "json"),
        ("stored-yaml", 1, "yaml"),
    ]
    assert all(d["stored_at"].endswith("+00:00") for d in listed)
    table = wfe("definitions", "list", "--url", url)
    assert "stored-json" in table.output
    assert "stored-yaml" in table.output
    only = ok_json("definitions", "list", "stored-yaml", "--url", url)
    assert [d["id"] for d in only] == ["stored-yaml"]
    shown = wfe("definitions", "show", "stored-yaml", "--url", url)
    assert shown.exit_code == 0
    assert shown.output == COUNTER_YAML
    as_json = ok_json("definitions", "show", "stored-json", "--version", "1", "--url", url)
    assert (as_json["version"], as_json["text"]) == (1, COUNTER_JSON)


def test_show_unknown_and_empty_list(url: str) -> None:
    """An unknown id is an error; an empty store lists nothing."""
    assert wfe("definitions", "list", "--url", url).output == "no stored definitions\n"
    missing = wfe("definitions", "show", "nope", "--url", url)
    assert missing.exit_code == 1
    assert "no stored definition 'nope'" in missing.output
    wfe("definitions", "load", "flows.json", "--url", url)
    wrong = wfe("definitions", "show", "stored-json", "--version", "2", "--url", url)
    assert "no stored definition 'stored-json' version 2" in wrong.output


def test_invalid_documents_are_refused_with_their_path(tmp_path: Path, url: str) -> None:
    """A document failing the schema or an expression is refused naming the path;
    nothing is stored."""
    document = json.loads(COUNTER_JSON)
    document["Steps"][2]["Do"][0][1]["Inputs"]["Value"] = "data.counter4 +"
    (tmp_path / "bad.json").write_text(json.dumps(document))
    bad = wfe("definitions", "load", "bad.json", "--url", url)
    assert bad.exit_code == 1
    assert "bad.json: Steps[2].Do[0][1].Inputs.Value: 'data.counter4 +' is not a valid" in (
        bad.output
    )
    (tmp_path / "bad2.json").write_text('{"Id": "x", "Version": "one", "Steps": []}')
    bad2 = wfe("definitions", "load", "bad2.json", "--url", url)
    assert bad2.exit_code == 1
    assert "Version: 'one' is not of type 'integer'" in bad2.output
    assert ok_json("definitions", "list", "--url", url) == []


def test_app_checks_types_before_storing(tmp_path: Path, url: str) -> None:
    """With --app (a registry, or a worker app setting host.definition_registry) an
    unknown step type or input is refused before anything is stored."""
    unknown = COUNTER_JSON.replace('"StepType": "Count"', '"StepType": "Counter"', 1)
    (tmp_path / "unknown.json").write_text(unknown)
    for app in ("defs_app:registry", "defs_app:register"):
        refused = wfe("definitions", "load", "unknown.json", "--app", app, "--url", url)
        assert refused.exit_code == 1, refused.output
        assert "unknown step type 'Counter'" in refused.output
        assert "Steps[" in refused.output
    assert ok_json("definitions", "list", "--url", url) == []
    made = ok_json("definitions", "load", "flows.json", "--app", "defs_app:registry", "--url", url)
    assert made["checked_with_app"] is True
    made = ok_json("definitions", "load", "flows.yaml", "--app", "defs_app:register", "--url", url)
    assert made["stored"] is True


def test_a_changed_version_is_refused(tmp_path: Path, url: str) -> None:
    """Another text under a stored version is refused, asking to bump the version."""
    wfe("definitions", "load", "flows.json", "--url", url)
    (tmp_path / "changed.json").write_text(COUNTER_JSON.replace("a decision", "changed"))
    refused = wfe("definitions", "load", "changed.json", "--url", url)
    assert refused.exit_code == 1
    assert "bump Version" in refused.output


def test_format_from_extension_or_option(tmp_path: Path) -> None:
    """The format comes from the extension, else --format; a bad --app is a usage error."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    (tmp_path / "flows.txt").write_text(COUNTER_YAML)
    guess = wfe("definitions", "load", "flows.txt", "--url", url)
    assert guess.exit_code == 2
    assert "cannot tell the format" in guess.output
    given = wfe("definitions", "load", "flows.txt", "--format", "yaml", "--url", url)
    assert given.exit_code == 0, given.output
    bad_app = wfe("definitions", "load", "flows.json", "--app", "nowhere:x", "--url", url)
    assert bad_app.exit_code == 2
    assert "--app" in bad_app.output
