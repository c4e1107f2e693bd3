"""Helpers of the teeth tests: deliberately broken providers, each in its own test
module of a pytester subprocess, must fail the suite tests written to catch them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

__all__ = ["Broken", "assert_caught", "failed_tests", "module_name", "suite_test_names"]


@dataclass(frozen=True)
class Broken:
    """A deliberately broken provider and the suite tests that must catch it."""

    name: str
    source: str
    must_fail: tuple[str, ...]


def module_name(case_name: str, prefix: str = "test_") -> str:
    """The test module a case's provider is written to."""
    return f"{prefix}{case_name}"


def failed_tests(output: str, *, errors: bool = False) -> dict[str, set[str]]:
    """The suite tests a run's summary names as FAILED (and ERROR with ``errors``), by
    module (case)."""
    kinds = "(?:FAILED|ERROR)" if errors else "FAILED"
    failed: dict[str, set[str]] = {}
    for module, test in re.findall(
        rf"^{kinds} (test_\w+)\.py::TestProvider::(\w+)", output, re.MULTILINE
    ):
        failed.setdefault(module, set()).add(test)
    return failed


def suite_test_names(*suites: type) -> set[str]:
    """The test names the suite classes define, themselves or through the suite classes
    they combine (``WorkflowRepositoryTests``, ``HostScenarioTests``, ...)."""
    return {
        name
        for suite in suites
        for cls in suite.__mro__
        if cls.__name__.endswith("Tests")
        for name in vars(cls)
        if name.startswith("test_")
    }


def node_ids(case_name: str, tests: Iterable[str]) -> list[str]:
    """The node ids of ``tests`` in a case's module."""
    return [f"{module_name(case_name)}.py::TestProvider::{test}" for test in tests]


def assert_caught(
    pytester: pytest.Pytester, cases: Sequence[Broken], header: str, footer: str
) -> None:
    """Write each case's provider to its own module and run, in one subprocess, the
    tests it must fail; every one of them must fail."""
    ids: list[str] = []
    for case in cases:
        pytester.makepyfile(**{module_name(case.name): header + case.source + footer})
        ids += node_ids(case.name, case.must_fail)
    result = pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE", *ids)
    output = result.stdout.str()
    failed = failed_tests(output)
    missed = {
        case.name: sorted(set(case.must_fail) - failed.get(module_name(case.name), set()))
        for case in cases
    }
    missed = {name: tests for name, tests in missed.items() if tests}
    assert not missed, f"broken providers that passed tests meant to catch them: {missed}\n{output}"
    result.assert_outcomes(failed=len(ids))
