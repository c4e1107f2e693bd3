"""The suite's layout keeps its promises: every module has its asserts rewritten, the
host scenario mixins are all combined in ``HostScenarioTests``, and no source file
grows past the size the project allows."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import wfe_conformance
import wfe_conformance.scenarios
from teeth_support import suite_test_names

MAX_LINES = 600


def _modules(package: object) -> list[str]:
    """The names of every module of ``package``, those of subpackages too."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(
            package.__path__,  # type: ignore[attr-defined]
            f"{package.__name__}.",  # type: ignore[attr-defined]
        )
    )


def test_every_module_is_registered_for_assert_rewriting() -> None:
    """Each module of the package is named in ``register_assert_rewrite`` (a failing
    check in a module left out would report a bare AssertionError)."""
    registered = set(wfe_conformance._ASSERT_REWRITTEN)
    missing = [name for name in _modules(wfe_conformance) if name not in registered]
    assert not missing, f"add to _ASSERT_REWRITTEN in wfe_conformance/__init__.py: {missing}"
    for name in registered:
        importlib.import_module(name)


def test_suite_modules_are_loaded_with_assert_rewriting(request: pytest.FixtureRequest) -> None:
    """Under pytest the suite modules are imported through its assert-rewriting hook."""
    if request.config.getoption("assertmode") != "rewrite":
        pytest.skip("assert rewriting is off (--assert=plain)")
    plain = [
        name
        for name in _modules(wfe_conformance)
        if type(importlib.import_module(name).__loader__).__name__ != "AssertionRewritingHook"
    ]
    assert not plain, f"modules imported without assert rewriting: {plain}"


def test_host_scenario_tests_combine_every_scenario_mixin() -> None:
    """``HostScenarioTests`` is the composition of every ``*ScenarioTests`` mixin of the
    scenarios package, and ``ProviderConformance`` runs it."""
    mixins = {
        cls
        for name in _modules(wfe_conformance.scenarios)
        for cls in vars(importlib.import_module(name)).values()
        if inspect.isclass(cls)
        and cls.__module__ == name
        and cls.__name__.endswith("ScenarioTests")
    }
    host = wfe_conformance.HostScenarioTests
    assert mixins, "no scenario mixins found"
    assert mixins <= set(host.__mro__), sorted(c.__name__ for c in mixins - set(host.__mro__))
    assert not [n for n in vars(host) if n.startswith("test_")], "tests belong in a mixin"
    assert suite_test_names(host) == suite_test_names(*mixins)
    assert issubclass(wfe_conformance.ProviderConformance, host)


def test_no_source_file_is_too_long() -> None:
    """Every file of ``conformance/src`` stays within the project's size limit."""
    root = Path(wfe_conformance.__file__).parent
    lengths = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for path in root.rglob("*.py")
    }
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"
