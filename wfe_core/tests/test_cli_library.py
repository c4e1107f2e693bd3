"""The library parts the CLI is built on, used without it: graceful shutdown
(:mod:`wfe_core.shutdown`), app loading (:mod:`wfe_core.app_loading`), and the
package shape (no library module imports the CLI)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from wfe_core.app_loading import AppLoadError, AppRegistrationError, apply_app
from wfe_core.host import WorkflowHost
from wfe_core.shutdown import run_until_signalled

from wfe_memory import MemoryPersistenceProvider


def test_run_until_signalled_stops_the_host_on_sigterm() -> None:
    calls: list[str] = []

    async def go() -> str | None:
        host = WorkflowHost(MemoryPersistenceProvider())

        def started() -> None:
            calls.append("started")
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop, not fatal

        def stopping(name: str | None) -> None:
            calls.append(f"stopping {name}")

        stopped = await run_until_signalled(host, on_started=started, on_stopping=stopping)
        calls.append("returned")
        return stopped

    assert asyncio.run(go()) == "SIGTERM"
    assert calls == ["started", "stopping SIGTERM", "returned"]
    # the handler is removed again: the default one is back
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _app(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"wfe_test_lib_app_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "is not module:attr"),
        ("wfe_no_such_module_xyz:workflows", "cannot import 'wfe_no_such_module_xyz'"),
        ("wfe_core.demo:nothing_here", "has no attribute 'nothing_here'"),
        ("wfe_core.demo:PAYMENT_EVENT", "is str; expected a Workflow"),
    ],
)
def test_apply_app_refuses_a_spec_naming_nothing_usable(spec: str, message: str) -> None:
    host = WorkflowHost(MemoryPersistenceProvider())
    with pytest.raises(AppLoadError, match=message):
        asyncio.run(apply_app(host, spec))


def test_apply_app_registers_and_reports_a_failing_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = WorkflowHost(MemoryPersistenceProvider())
    definitions = asyncio.run(apply_app(host, "wfe_core.demo:workflows"))
    assert [(d.id, d.version) for d in definitions] == [("order", 1)]
    module = _app(tmp_path, "def register(host):\n    raise RuntimeError('boom')\n", monkeypatch)
    with pytest.raises(AppRegistrationError, match="registering the workflows failed"):
        asyncio.run(apply_app(WorkflowHost(MemoryPersistenceProvider()), f"{module}:register"))


def test_no_library_module_imports_the_cli() -> None:
    """Importing wfe_core, the demo and the modules the CLI is built on leaves the CLI
    unimported (no import circle between demo and cli)."""
    code = textwrap.dedent(
        """
        import sys
        import wfe_core, wfe_core.demo, wfe_core.coercion, wfe_core.app_loading
        import wfe_core.shutdown, wfe_core.client_session
        loaded = [m for m in sys.modules if m == "wfe_core.cli" or m.startswith("wfe_core.cli.")]
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
