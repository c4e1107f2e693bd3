"""A real ``wfe worker`` subprocess for the CLI tests: its stdout lines can be awaited
(a reader thread queues them), it is stopped with a real signal, and everything it wrote
is collected. Shared by the tests that run workers (``test_cli``, ``test_cli_backup``,
``test_cli_processes``);
the ``workers`` fixture (``tests/conftest.py``) kills what a test left running."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

WFE = Path(sys.executable).with_name("wfe")
"""The ``wfe`` script of the environment the tests run in."""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``WFE_URL`` / ``WFE_APP``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("WFE_URL", "WFE_APP")}
    env.update(extra)
    return env


BLOCKING_APP = """
    import asyncio
    from pathlib import Path

    from wfe_core import Workflow


    async def block(context):
        Path("step-started").write_text(context.workflow.id)
        await asyncio.sleep(3600)


    class Block(Workflow[dict]):
        id = "block"
        data_type = dict

        def build(self, builder):
            builder.start_with(block).name("blocking step")


    def register(host):
        host.register_workflow(Block())
"""
"""An app (``register``) whose workflow ``block`` writes ``step-started`` in the
worker's folder and then waits for ever in its step."""


class WorkerProcess:
    """``wfe worker ARGS`` in ``cwd``, unbuffered; stdout lines can be awaited.
    ``command``: what comes between ``wfe`` and ``ARGS`` (``()`` for a full command
    line in ``ARGS``)."""

    def __init__(
        self, args: list[str], cwd: Path, *, command: tuple[str, ...] = ("worker",)
    ) -> None:
        self.proc = subprocess.Popen(
            [str(WFE), *command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=clean_env(PYTHONUNBUFFERED="1"),
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, needle: str, timeout: float = 60.0) -> str:
        """The first stdout line holding ``needle``, waiting up to ``timeout`` seconds."""
        for line in self.lines:
            if needle in line:
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            self.lines.append(item)
            if needle in item:
                return item
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no line with {needle!r} in {self.lines!r} {err}")

    def stop(
        self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0
    ) -> tuple[int, str, str]:
        """Send ``sig``; the exit status, everything on stdout and on stderr."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                break
            self.lines.append(item)
        return code, "".join(self.lines), err

    def kill(self) -> None:
        """Kill it if it still runs and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
