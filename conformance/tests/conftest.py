"""Fixtures shared by the teeth tests: a pytester whose subprocesses run a suite alone."""

from __future__ import annotations

import pytest

INI = """
[pytest]
addopts = -p no:cacheprovider
filterwarnings = error
xfail_strict = true
"""


@pytest.fixture
def isolated_pytester(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A pytester (own temp dir) whose subprocesses load only the anyio plugin."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeini(INI)
    return pytester
