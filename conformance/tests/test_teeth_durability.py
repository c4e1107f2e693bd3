"""``DurabilityTests`` has teeth: stores that are not durable, yet declare ``DURABLE``,
fail it -- exactly the tests written to catch them.

Each case is a module run in one pytest subprocess (pytester): a provider, the
``store_opener`` that reopens its store (here and in the other processes the suite
starts), and the suite. A real durable store (SQLite, opened again by URL) passes every
test; the memory provider, which does not declare ``DURABLE``, skips them all naming
the capability.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

TESTS = (
    "test_everything_survives_close_and_reopen",
    "test_second_provider_sees_writes_while_both_are_open",
    "test_another_process_sees_writes_of_this_one",
    "test_this_process_sees_writes_of_another",
    "test_host_in_another_process_runs_a_workflow_started_here",
)
CROSS_PROCESS = TESTS[2:]

HEADER = '''
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wfe_conformance.capability_honesty import CapabilityHonestyTests
from wfe_conformance.durability import DurabilityTests, StoreOpener
from wfe_core.capabilities import Capability
from wfe_memory import MemoryPersistenceProvider

SHARED: dict[str, dict[str, Any]] = {}
OWN = {"_capabilities", "_serializer", "_clock", "name", "_closed"}


class PerProcess(MemoryPersistenceProvider):
    """Declares DURABLE but keeps its data in a module-level dict by name: provider
    objects of this process share it (also after close); other processes see nothing."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        state = SHARED.setdefault(name, {})
        for attr, value in list(vars(self).items()):
            if attr in OWN:
                continue
            if attr in state:
                setattr(self, attr, state[attr])
            else:
                state[attr] = value

    @property
    def capabilities(self) -> frozenset[Capability]:
        return super().capabilities | {Capability.DURABLE}

    async def close(self) -> None:
        self._closed = True  # the data stays in SHARED


class LosesOnClose(PerProcess):
    """PerProcess, but closing any provider object drops the data."""

    async def close(self) -> None:
        await MemoryPersistenceProvider.close(self)


def open_per_process(name: str) -> PerProcess:
    return PerProcess(name)


def open_loses_on_close(name: str) -> LosesOnClose:
    return LosesOnClose(name)
'''

FOOTER = """

class TestProvider(DurabilityTests, CapabilityHonestyTests):
    @pytest.fixture
    async def provider(self, store_opener: StoreOpener) -> AsyncIterator[Any]:
        async with store_opener.open() as p:
            yield p
"""


@dataclass(frozen=True)
class Case:
    """A store, how to reopen it, and the suite tests it must fail (exactly)."""

    name: str
    opener: str
    must_fail: tuple[str, ...]
    skipped: int = 0


CASES = [
    Case(
        "sqlite_file",
        '''
@pytest.fixture
def store_opener(self, tmp_path: Path) -> StoreOpener:
    """A real durable store: a SQLite file, opened again by URL."""
    return StoreOpener(url=f"sqlite:///{tmp_path / 'wfe.db'}")
''',
        (),
    ),
    Case(
        "memory_not_durable",
        '''
@pytest.fixture
def store_opener(self) -> StoreOpener:
    """The memory provider does not declare DURABLE: everything skips."""
    return StoreOpener(url="memory://")
''',
        (),
        skipped=len(TESTS),
    ),
    Case(
        "per_process",
        '''
@pytest.fixture
def store_opener(self) -> StoreOpener:
    """A store that lives in this process only."""
    return StoreOpener(factory=f"{__name__}:open_per_process", options={"name": uuid.uuid4().hex})
''',
        CROSS_PROCESS,
    ),
    Case(
        "loses_on_close",
        '''
@pytest.fixture
def store_opener(self) -> StoreOpener:
    """A store that lives in this process and is dropped by any close."""
    return StoreOpener(
        factory=f"{__name__}:open_loses_on_close", options={"name": uuid.uuid4().hex}
    )
''',
        ("test_everything_survives_close_and_reopen", *CROSS_PROCESS),
    ),
]


def _module(case: Case) -> str:
    return f"test_durable_{case.name}"


def _source(case: Case) -> str:
    # the opener fixture goes into the test class (indented), the rest as written
    body = "\n".join(f"    {line}" if line else "" for line in case.opener.splitlines())
    return HEADER + FOOTER + body + "\n"


def _outcomes(output: str) -> dict[str, dict[str, str]]:
    """Outcome of each test by module, from the lines of a verbose run (a test that
    fails at teardown too keeps its first, worse, outcome)."""
    found: dict[str, dict[str, str]] = {}
    for module, test, outcome in re.findall(
        r"^(test_\w+)\.py::TestProvider::(\w+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL)",
        output,
        re.MULTILINE,
    ):
        tests = found.setdefault(module, {})
        if tests.get(test) in (None, "PASSED"):
            tests[test] = outcome
    return found


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail is a DurabilityTests test, and all are listed."""
    from wfe_conformance.durability import DurabilityTests

    suite = {name for name in vars(DurabilityTests) if name.startswith("test_")}
    assert suite == set(TESTS)
    for case in CASES:
        assert set(case.must_fail) <= suite, case.name


def test_non_durable_stores_declaring_durable_are_caught(
    isolated_pytester: pytest.Pytester,
) -> None:
    """Each store fails exactly the durability tests written to catch it (the SQLite
    file passes them all, the memory provider skips them all); the capability honesty
    test of the DURABLE declaration passes for every one (it only checks that the
    store can be reopened in this process)."""
    for case in CASES:
        isolated_pytester.makepyfile(**{_module(case): _source(case)})
    result = isolated_pytester.runpytest_subprocess(
        "-p", "anyio", "-v", "-rs", "-k", " or ".join((*TESTS, "durable_declaration"))
    )
    output = result.stdout.str()
    outcomes = _outcomes(output)
    problems: list[str] = []
    for case in CASES:
        got = outcomes.get(_module(case), {})
        failed = {test for test, outcome in got.items() if outcome in ("FAILED", "ERROR")}
        skipped = {test for test, outcome in got.items() if outcome == "SKIPPED"}
        if failed != set(case.must_fail):
            problems.append(
                f"{case.name}: failed {sorted(failed)}, expected {sorted(case.must_fail)}"
            )
        if len(skipped) != case.skipped:
            problems.append(f"{case.name}: skipped {sorted(skipped)}")
        if len(got) != len(TESTS) + 1:
            problems.append(f"{case.name}: ran {sorted(got)}")
    assert not problems, "\n".join(problems) + "\n" + output
    assert "does not declare capability DURABLE" in output
