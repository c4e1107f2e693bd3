"""The provider registry: URL schemes resolved through the wfe.providers entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest
from wfe_core.errors import ProviderNotFound
from wfe_core.registry import StoreComponents, available_schemes, open_store, redact_url, url_scheme

from wfe_core import registry


def _only(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: list(eps))


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)


def test_memory_resolves_through_the_real_entry_point() -> None:
    from wfe_memory import MemoryPersistenceProvider

    assert "memory" in available_schemes()
    components = open_store("memory://")
    assert isinstance(components, StoreComponents)
    assert isinstance(components.persistence, MemoryPersistenceProvider)
    assert components.lock_provider is None
    assert components.queue_provider is None
    assert components.lifecycle is None
    named = open_store("memory://demo")
    assert named.persistence is not components.persistence


def test_options_reach_the_factory() -> None:
    from wfe_core.capabilities import Capability

    store = open_store("memory://", capabilities=[Capability.PURGE])
    assert store.persistence.capabilities == {Capability.PURGE}


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("postgres://h/db", "postgresql"),
        ("postgresql://h/db", "postgresql"),
        ("postgresql+asyncpg://h/db", "postgresql"),
        ("POSTGRESQL://h/db", "postgresql"),
        ("sqlite:///wfe.db", "sqlite"),
        ("sqlite+aiosqlite:///wfe.db", "sqlite"),
        ("memory:", "memory"),
        ("redis://localhost:6379/0", "redis"),
    ],
)
def test_url_scheme(url: str, scheme: str) -> None:
    assert url_scheme(url) == scheme


@pytest.mark.parametrize(
    ("scheme", "hint"),
    [
        ("postgresql", "pip install wfe-postgres"),
        ("postgres", "pip install wfe-postgres"),
        ("sqlite", "pip install wfe-sqlite"),
        ("redis", "pip install wfe-redis"),
        ("memory", "pip install wfe-memory"),
    ],
)
def test_known_scheme_not_installed_names_the_package(
    monkeypatch: pytest.MonkeyPatch, scheme: str, hint: str
) -> None:
    _only(monkeypatch)
    with pytest.raises(ProviderNotFound, match="no wfe provider is installed for URL scheme") as e:
        open_store(f"{scheme}://somewhere/db")
    assert hint in str(e.value)
    assert repr(url_scheme(f"{scheme}://x")) in str(e.value)


def test_unknown_scheme_message() -> None:
    with pytest.raises(ProviderNotFound) as e:
        open_store("nosuchstore://host/db")
    message = str(e.value)
    assert "'nosuchstore'" in message
    assert "install the wfe-nosuchstore package that provides it" in message
    assert "nosuchstore://host/db" in message


def test_password_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch)
    with pytest.raises(ProviderNotFound) as e:
        open_store("postgresql://alice:s3cret@db.example:5432/wfe")
    message = str(e.value)
    assert "s3cret" not in message
    assert "postgresql://alice:***@db.example:5432/wfe" in message
    assert "pip install wfe-postgres" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://h/db?user=u&password=pw&x=1", "postgresql://h/db?user=u&password=***&x=1"),
        ("sqlite:///wfe.db", "sqlite:///wfe.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("url", ["wfe.db", "/var/lib/wfe.db", "", "C:\\wfe.db", "://x"])
def test_url_without_scheme_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected '<scheme>://\.\.\.'"):
        open_store(url)


def test_factory_may_return_store_components(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, _ep("fancy", f"{__name__}:fancy_factory"))
    components = open_store("fancy://x", flag=True)
    assert components.lock_provider is not None
    assert components.persistence.capabilities == frozenset()
    assert available_schemes() == ["fancy"]


def test_factory_returning_something_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, _ep("bad", f"{__name__}:bad_factory"))
    with pytest.raises(TypeError, match="not a PersistenceProvider or StoreComponents"):
        open_store("bad://x")


def test_broken_entry_point_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, _ep("broken", "wfe_no_such_module_anywhere:factory"))
    with pytest.raises(ProviderNotFound, match="installed but could not be loaded"):
        open_store("broken://x")


def fancy_factory(url: str, **options: Any) -> StoreComponents:
    from wfe_core.locks import InProcessLockProvider

    from wfe_memory import MemoryPersistenceProvider

    assert options == {"flag": True}
    return StoreComponents(
        persistence=MemoryPersistenceProvider(capabilities=()),
        lock_provider=InProcessLockProvider(),
    )


def bad_factory(url: str, **options: Any) -> object:
    return object()
