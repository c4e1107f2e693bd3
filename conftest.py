"""Root pytest configuration shared by every package's tests.

When ``CI`` is set, a skipped test fails the run unless it was skipped because the
provider does not declare an optional capability: a provider test that would skip
for a missing service must fail in CI, never pass silently.
"""

from __future__ import annotations

import os

import pytest

# The SQL dialect suite's tests live in an installed package: rewrite its asserts too.
pytest.register_assert_rewrite("wfe_sql.testing")

_ALLOWED_SKIP = "does not declare capability"
_bad_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect skips that CI must not accept (runs on the xdist controller too)."""
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    if _ALLOWED_SKIP not in reason:
        _bad_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when CI saw a forbidden skip."""
    if _bad_skips and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Summarise skips by reason (one line per reason, with a count, instead of one per
    test), then list the skips CI does not allow."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if hasattr(report, "wasxfail"):
            continue
        longrepr = report.longrepr
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.line(f"{count:5d} x {reason}")
    if _bad_skips:
        terminalreporter.section("skipped in CI (not allowed)")
        for line in _bad_skips:
            terminalreporter.line(line)


@pytest.fixture(autouse=True)
def _wfe_no_namespace_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their namespace themselves: a ``WFE_NAMESPACE`` set in the shell
    that runs pytest must not move every store of every test into it."""
    monkeypatch.delenv("WFE_NAMESPACE", raising=False)
    monkeypatch.delenv("WFE_CONFIG", raising=False)
