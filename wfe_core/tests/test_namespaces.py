"""Namespace names, their resolution (keyword > URL > ``WFE_NAMESPACE`` > default),
``open_store(namespace=)``, the host's services following the store's namespace, and
the README's example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wfe_core.namespaces import (
    DEFAULT_NAMESPACE,
    MAX_NAMESPACE_LENGTH,
    NAMESPACE_ENV,
    check_namespace,
    resolve_namespace,
)
from wfe_core.registry import open_store

from wfe_core import WorkflowClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["default", "staging", "tenant_42", "a", "a1_b2", "x" * 24])
def test_valid_names(name: str) -> None:
    assert check_namespace(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Staging", "1abc", "_a", "a_", "a__b", "a-b", "a:b", "a b", "x" * 25, "é"],
)
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match="namespace") as raised:
        check_namespace(name)
    if name:
        assert repr(name) in str(raised.value)
        assert str(MAX_NAMESPACE_LENGTH) in str(raised.value)


def test_a_name_that_is_no_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="namespace must be a string, not int"):
        check_namespace(42)


def test_resolution_order() -> None:
    env = {NAMESPACE_ENV: "from_env"}
    assert resolve_namespace("kw", from_url="url", environ=env) == "kw"
    assert resolve_namespace(None, from_url="url", environ=env) == "url"
    assert resolve_namespace(None, environ=env) == "from_env"
    assert resolve_namespace(None, environ={NAMESPACE_ENV: ""}) == DEFAULT_NAMESPACE
    assert resolve_namespace(None, environ={}) == DEFAULT_NAMESPACE
    with pytest.raises(ValueError, match=NAMESPACE_ENV):
        resolve_namespace(None, environ={NAMESPACE_ENV: "Bad"})
    with pytest.raises(ValueError, match=r"\?namespace= in the store URL"):
        resolve_namespace(None, from_url="Bad")


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAMESPACE_ENV, "ci_run")
    assert resolve_namespace() == "ci_run"
    store = open_store("memory://")
    assert store.persistence.namespace == "ci_run"  # type: ignore[attr-defined]


def test_open_store_refuses_a_namespace_its_factory_cannot_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider factory without a ``namespace`` keyword gets the default namespace
    silently (nothing to pass) and any other one refused, naming it."""
    from wfe_core import registry
    from wfe_memory import MemoryPersistenceProvider

    def plain(url: str) -> Any:
        return MemoryPersistenceProvider()

    monkeypatch.setattr(registry, "_factory", lambda url: (plain, "tests:plain"))
    assert open_store("plain://", namespace=DEFAULT_NAMESPACE).persistence is not None
    with pytest.raises(ValueError, match=r"takes no namespace.*'other'"):
        open_store("plain://", namespace="other")
    with pytest.raises(ValueError, match="not a valid namespace"):
        open_store("plain://", namespace="Not Valid")


def test_a_service_url_in_another_namespace_is_refused(tmp_path: Path) -> None:
    """A host's Redis lock / queue must share its store's namespace."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}?namespace=team_a"
    with pytest.raises(ValueError, match="names namespace 'team_b' but the store is in"):
        WorkflowClient.from_url(url, lock_url="redis://127.0.0.1:6379/0?namespace=team_b")


def test_service_urls_follow_the_store_namespace(tmp_path: Path) -> None:
    """Without ``?namespace=`` of its own, a Redis service opens in the store's."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}?namespace=team_a"
    client = WorkflowClient.from_url(
        url,
        lock_url="redis://127.0.0.1:6379/0",
        queue_url="redis://127.0.0.1:6379/0?namespace=team_a",
    )
    assert client.persistence.namespace == "team_a"  # type: ignore[attr-defined]
    assert client.lock_provider.namespace == "team_a"  # type: ignore[attr-defined]
    assert client.queue_provider.namespace == "team_a"  # type: ignore[attr-defined]


def test_readme_namespaces_example_runs(tmp_path: Path) -> None:
    """The README's "Namespaces" example runs as written: one key, two instances."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Namespaces", 1)[1]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    script = tmp_path / "namespaces_example.py"
    script.write_text(example)
    env = {k: v for k, v in os.environ.items() if k != NAMESPACE_ENV}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "two instances: True" in done.stdout
    assert "each sees: 1 1" in done.stdout
