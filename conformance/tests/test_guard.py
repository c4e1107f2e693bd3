"""Tests of the suite guard in ``wfe_conformance.base`` and of capability skips.

A provider's test class may override a suite test only with
``@pytest.mark.xfail(reason=...)``; the guard test ``test_suite_tests_are_not_weakened``
fails otherwise, naming the test. A test needing an undeclared capability is skipped
with the capability named in the reason.
"""

from __future__ import annotations

import textwrap

import pytest

# Imported here so every pytester run reuses them (pytester forgets modules first
# imported inside a run).
import wfe_conformance.commands
import wfe_conformance.lock_tests

_PRELOADED = (wfe_conformance,)

_INI = """\
[pytest]
addopts = -p anyio -p no:cacheprovider -p no:hypothesispytest -p no:xdist
filterwarnings =
    error
xfail_strict = true
"""

_GUARD = "test_suite_tests_are_not_weakened"


def _write(pytester: pytest.Pytester, body: str) -> None:
    pytester.makefile(".ini", pytest=_INI)
    header = (
        "import pytest\n\n"
        "from wfe_conformance.commands import ScheduledCommandTests\n"
        "from wfe_conformance.lock_tests import LockProviderTests\n\n\n"
    )
    pytester.makepyfile(test_guarded=header + textwrap.dedent(body))


def test_override_without_xfail_fails_the_guard_naming_the_test(
    pytester: pytest.Pytester,
) -> None:
    """Overriding a suite test with a plain method makes the guard fail, naming it."""
    _write(
        pytester,
        """
        class TestWeakened(LockProviderTests):
            async def test_lock_is_not_reentrant(self, lock_provider):
                pass
        """,
    )
    result = pytester.runpytest("-k", _GUARD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*test_lock_is_not_reentrant: overridden in TestWeakened without*xfail*"]
    )


def test_override_with_strict_xfail_and_reason_passes_the_guard(
    pytester: pytest.Pytester,
) -> None:
    """An override marked xfail(reason=..., strict=True) is accepted by the guard."""
    _write(
        pytester,
        """
        class TestDocumentedGap(LockProviderTests):
            @pytest.mark.xfail(reason="this store's locks are re-entrant", strict=True)
            async def test_lock_is_not_reentrant(self, lock_provider):
                assert False
        """,
    )
    result = pytester.runpytest("-k", f"{_GUARD} or test_lock_is_not_reentrant")
    result.assert_outcomes(passed=1, xfailed=1)


def test_override_with_xfail_without_reason_fails_the_guard(pytester: pytest.Pytester) -> None:
    """An xfail override with no reason does not satisfy the guard."""
    _write(
        pytester,
        """
        class TestNoReason(LockProviderTests):
            @pytest.mark.xfail(strict=True)
            async def test_release_then_reacquire(self, lock_provider):
                assert False
        """,
    )
    result = pytester.runpytest("-k", _GUARD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_release_then_reacquire: overridden in TestNoReason*"])


@pytest.mark.parametrize(
    "mark",
    ['pytest.mark.skip(reason="flaky here")', 'pytest.mark.skipif(True, reason="not here")'],
)
def test_override_with_skip_mark_fails_the_guard(pytester: pytest.Pytester, mark: str) -> None:
    """An override carrying skip or skipif fails the guard, naming the test."""
    _write(
        pytester,
        f"""
        class TestSkipped(LockProviderTests):
            @{mark}
            async def test_lock_expires_after_its_ttl(self, lock_provider, second_lock_provider):
                pass
        """,
    )
    result = pytester.runpytest("-k", _GUARD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*test_lock_expires_after_its_ttl: suite tests may not be skipped*"]
    )


def test_rebinding_a_suite_test_with_a_skip_mark_fails_the_guard(
    pytester: pytest.Pytester,
) -> None:
    """Re-using the suite's own function under a skip mark is caught too."""
    _write(
        pytester,
        """
        class TestRebound(LockProviderTests):
            test_renew_extends_the_lease = pytest.mark.skip(reason="slow")(
                LockProviderTests.test_renew_extends_the_lease
            )
        """,
    )
    # a subprocess: marking the suite's own function object changes it for the process
    result = pytester.runpytest_subprocess("-k", _GUARD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_renew_extends_the_lease: suite tests may not be skipped*"])


def test_untouched_suites_pass_the_guard(pytester: pytest.Pytester) -> None:
    """A provider class combining suites without overriding tests passes the guard."""
    _write(
        pytester,
        """
        class _Caps:
            capabilities = frozenset()

        class TestCombined(ScheduledCommandTests, LockProviderTests):
            @pytest.fixture
            async def provider(self):
                yield _Caps()
        """,
    )
    result = pytester.runpytest("-k", _GUARD)
    result.assert_outcomes(passed=1)


def test_capability_skip_reason_names_the_capability(pytester: pytest.Pytester) -> None:
    """With no capability declared every ScheduledCommandTests test is skipped, and the
    skip reason names SCHEDULED_COMMANDS."""
    _write(
        pytester,
        """
        class NoCapabilities:
            capabilities = frozenset()

        class TestNoCommands(ScheduledCommandTests):
            @pytest.fixture
            async def provider(self):
                yield NoCapabilities()
        """,
    )
    result = pytester.runpytest("-rs")
    suite_tests = [
        n for n in vars(wfe_conformance.commands.ScheduledCommandTests) if n.startswith("test_")
    ]
    result.assert_outcomes(passed=1, skipped=len(suite_tests))
    result.stdout.fnmatch_lines(
        ["*SKIPPED*NoCapabilities does not declare capability SCHEDULED_COMMANDS*"]
    )
