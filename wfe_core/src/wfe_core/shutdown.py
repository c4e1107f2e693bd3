"""Running a host until the process is told to stop: graceful shutdown on SIGINT/SIGTERM.

:func:`run_until_signalled` is what ``wfe worker`` runs, usable from any program that
hosts workflows itself::

    import asyncio
    from wfe_core import WorkflowHost
    from wfe_core.shutdown import run_until_signalled

    async def main() -> None:
        host = WorkflowHost.from_url("sqlite:///wfe.db")
        host.register_workflow(MyWorkflow())
        await run_until_signalled(host)

    asyncio.run(main())

The first Ctrl-C (SIGINT) or SIGTERM stops the host: it takes no more work and waits for
its running steps (up to ``HostOptions.stop_timeout``), then the call returns. A second
one while it waits ends the process at once with exit status 128 + the signal's number
(130 for Ctrl-C, 143 for SIGTERM), as if killed by it, after one line on stderr. Steps
still running are then abandoned: as after a crash, they run again (on this or another
worker) once their lock lease expires.

Signal handlers can only be installed from the main thread of the program's event loop
(and not on Windows); where they cannot, the signals keep their usual effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import types
from collections.abc import Callable, Sequence
from typing import NoReturn

from wfe_core.host import WorkflowHost

__all__ = ["STOP_SIGNALS", "force_exit", "run_until_signalled"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a host run by :func:`run_until_signalled` by default."""


def force_exit(
    signum: int,
    label: str = "wfe",
    on_forced: Callable[[signal.Signals], None] | None = None,
) -> NoReturn:
    """End the process now, on a second stop signal: ``on_forced(signal)`` is called
    (errors ignored), then one line starting with ``label`` goes to stderr, and the
    process exits with status ``128 + signum``. No cleanup runs: like a crash, which the
    store is built to survive."""
    sig = signal.Signals(signum)
    status = 128 + signum
    with contextlib.suppress(Exception):  # stdout may be mid-write in the main thread
        if on_forced is not None:
            on_forced(sig)
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"{label}: {sig.name} again: exiting now with status {status}, without waiting "
            "for running steps (they run again once their lock lease expires)\n"
        )
        sys.stderr.flush()
    os._exit(status)


async def run_until_signalled(
    host: WorkflowHost,
    *,
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
    on_started: Callable[[], None] | None = None,
    on_stopping: Callable[[str | None], None] | None = None,
    on_forced: Callable[[signal.Signals], None] | None = None,
    label: str = "wfe",
) -> str | None:
    """Start ``host`` and run it until one of ``signals`` arrives, then stop it
    gracefully (waiting for its running steps); return the signal's name.

    ``on_started()`` is called once the host runs, ``on_stopping(name)`` when a stop
    begins (``name`` is None if the wait ended otherwise, e.g. by cancellation). A
    second signal while stopping ends the process at once (:func:`force_exit`, with
    ``label`` and ``on_forced``). When ``host.start()`` fails, the host is stopped
    (errors ignored) and the error raised. The signal handlers are removed on return.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []
    installed: list[signal.Signals] = []

    def force(signum: int, frame: types.FrameType | None) -> None:
        force_exit(signum, label, on_forced)

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            force_exit(sig, label, on_forced)
        received.append(sig.name)
        stop.set()
        # From now on a signal ends the process from a plain handler, which runs as soon
        # as the main thread runs any Python code -- even if the event loop is stuck --
        # while the loop's registration stays, so its wake-up pipe still interrupts a
        # loop waiting for I/O. (Cancelling the main task instead could hang for good:
        # asyncio.run then waits for every task, including steps that ignore
        # cancellation, and for connection threads.)
        for other in installed:
            signal.signal(other, force)

    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        try:
            await host.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await host.stop()
            raise
        if on_started is not None:
            on_started()
        try:
            await stop.wait()
        finally:
            if on_stopping is not None:
                on_stopping(received[0] if received else None)
            await host.stop()
        return received[0] if received else None
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
