"""``wfe worker --processes N``: a supervisor running N worker processes on one store.

One Python process runs its steps on one core (a ``def`` step runs in a thread, but
the engine around it holds the GIL). ``--processes N`` uses N cores: the ``wfe worker``
process becomes a supervisor that runs nothing itself and starts N children, each a
complete ``wfe worker`` with the same store, app, namespace, services and options. They
share the work through the store exactly as N workers started by hand would (locks,
queues, claims), so nothing new is needed from the store: any store that serves
several processes (SQLite file, PostgreSQL, with or without Redis) serves them.

How a child is started
----------------------
``sys.executable -m wfe_core.cli [the group's --url/--namespace/--config, when given on
the command line] worker <the worker's own arguments, as given> --processes 1`` (the
last ``--processes`` wins), in the same folder with the same environment, so every
setting reaches it by the same road it reached the supervisor: command line,
environment or project config. The worker's raw arguments are recorded while click
parses them (:class:`WorkerCommand`); values read from the environment or the config
are not copied onto the child's command line (a password in ``WFE_URL`` does not
appear in ``ps``).

* ``--metrics-port P``: child ``i`` (0 to N-1) serves on ``P + i``; ``0`` gives every
  child a free port of its own (each prints its URL).
* The children run in a process group of their own, so a Ctrl-C in the terminal reaches
  the supervisor only, and it forwards it once; on Linux a child also gets SIGTERM if the
  supervisor dies without stopping it (``PR_SET_PDEATHSIG``), so none is left running.

Signals and exit status
-----------------------
The first SIGTERM or Ctrl-C is forwarded to every child: each stops as ``wfe worker``
does (waits for its running steps); the supervisor exits when all have stopped, with
status 0 when every child exited 0 and 1 when one failed (a child still starting,
ended by the forwarded signal itself before it could handle it, had nothing to finish
and counts as stopped). A second signal is forwarded too (each child exits at once) and
the supervisor exits with 128 + the signal's number. Signal the supervisor only: under
systemd use ``KillMode=mixed`` (``control-group`` signals the children as well, which
they would take as the second, forcing signal).

Restarts
--------
A child that exits while no stop was asked for is restarted after a pause, and the
exit is logged. The pause is 0.5 s after a child that ran for a while, then doubles
(1, 2, 4, 8 s) for each exit in a row within :data:`FAST_EXIT` seconds of starting;
the fifth such exit in a row (:data:`MAX_FAST_EXITS`) makes the supervisor give up: it
stops the other children and exits 1 with an error naming the process. A child that
exits with status 2 (bad input: a wrong ``--app``, option or config) that soon is not
restarted at all (every child would fail the same way).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click

from wfe_core.cli.options import Settings
from wfe_core.retry import backoff_delay

__all__ = [
    "FAST_EXIT",
    "MAX_FAST_EXITS",
    "MAX_PROCESSES",
    "WorkerCommand",
    "child_commands",
    "processes_option",
    "run_processes",
]

FAST_EXIT = 10.0
"""A child that exits within this many seconds of starting counts as a fast exit."""

MAX_FAST_EXITS = 5
"""Fast exits in a row of one child after which the supervisor gives up."""

MAX_PROCESSES = 1024
"""The largest ``--processes``."""

_ARGS = "wfe.worker_args"
_FIRST_PAUSE = 0.5
_MAX_PAUSE = 30.0
_TICK = 0.05
_PR_SET_PDEATHSIG = 1

processes_option = click.option(
    "--processes",
    type=click.IntRange(min=1, max=MAX_PROCESSES),
    default=1,
    show_default=True,
    envvar="WFE_PROCESSES",
    help="Run this many worker processes (one core each) under a supervisor that "
    "forwards Ctrl-C/SIGTERM and restarts a process that dies. With --metrics-port P, "
    "process i serves on P+i. Env: WFE_PROCESSES.",
)
"""``--processes N`` (env ``WFE_PROCESSES``, config key ``processes``)."""


class WorkerCommand(click.Command):
    """``wfe worker``'s command class: it records the arguments it was given, so that
    ``--processes N`` can start its children with the same ones."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Record ``args`` in ``ctx.meta``, then parse them as usual."""
        ctx.meta[_ARGS] = list(args)
        return super().parse_args(ctx, args)


def child_commands(ctx: click.Context, processes: int, metrics_port: int | None) -> list[list[str]]:
    """The command line of each of the ``processes`` children of the ``wfe worker``
    being run in ``ctx`` (see the module's docstring)."""
    raw = ctx.meta.get(_ARGS)
    if raw is None:
        raise click.UsageError(
            "--processes needs the worker's own command (wfe worker); it cannot be "
            "used from another click command"
        )
    group: list[str] = []
    parent = ctx.parent
    settings = ctx.find_object(Settings)
    if parent is not None and settings is not None:
        given = click.core.ParameterSource.COMMANDLINE
        if parent.get_parameter_source("url") is given:
            group += ["--url", settings.url]
        if parent.get_parameter_source("namespace") is given and settings.namespace:
            group += ["--namespace", settings.namespace]
        if parent.get_parameter_source("config") is given and settings.config_path:
            group += ["--config", str(settings.config_path)]
    if metrics_port and metrics_port + processes - 1 > 65535:
        raise click.BadParameter(
            f"--metrics-port {metrics_port} with --processes {processes}: process i serves "
            f"on {metrics_port}+i, and the last port would be above 65535; choose a lower "
            "port (or 0 for any free port)",
            param_hint="'--metrics-port'",
        )
    base = [sys.executable, "-m", "wfe_core.cli", *group, "worker", *raw, "--processes", "1"]
    commands = []
    for index in range(processes):
        port = (
            []
            if metrics_port is None
            else ["--metrics-port", str(metrics_port and metrics_port + index)]
        )
        commands.append([*base, *port])
    return commands


class _Log:
    """The supervisor's own lines on stdout: text, or JSON objects (``--json`` /
    ``--log-format json``); errors on stderr as well."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def info(self, kind: str, message: str, **details: Any) -> None:
        if self.as_json:
            doc = {"event": kind, "time": datetime.now(UTC).isoformat(), **details}
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            click.echo(f"{datetime.now():%H:%M:%S} {message}")

    def error(self, kind: str, message: str, **details: Any) -> None:
        self.info(kind, message, **details)
        click.echo(f"wfe worker: {message}", err=True)


@dataclass
class _Child:
    """One slot of the supervisor: its command and the process running it."""

    index: int
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fast_exits: int = 0
    restart_at: float | None = None
    status: int | None = None


def _describe(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
        return f"killed by signal {-status}"
    return f"status {status}"


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the supervisor dies
    (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl
            os._exit(1)

    return preexec


class _Supervisor:
    """Starts, watches, restarts and stops the children."""

    def __init__(self, commands: Sequence[list[str]], log: _Log) -> None:
        self.children = [_Child(i, command) for i, command in enumerate(commands)]
        self.log = log
        self.signals: list[signal.Signals] = []
        self.handled = 0
        self.stopping = False
        self.forced: signal.Signals | None = None
        self.gave_up: str | None = None
        self.preexec = _death_signal()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signal.Signals(signum))

    def start(self, child: _Child) -> int:
        """Start ``child``'s process; its pid."""
        child.proc = subprocess.Popen(
            child.command,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=self.preexec,  # the supervisor runs no threads
        )
        child.started = time.monotonic()
        child.restart_at = None
        return child.proc.pid

    def live(self) -> list[_Child]:
        return [c for c in self.children if c.proc is not None]

    def forward(self, sig: signal.Signals) -> None:
        for child in self.live():
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(sig)

    def handle_signals(self) -> None:
        while self.handled < len(self.signals):
            sig = self.signals[self.handled]
            self.handled += 1
            if not self.stopping:
                self.stopping = True
                self.log.info(
                    "supervisor_stopping",
                    f"{sig.name}: stopping {len(self.live())} worker processes, waiting for "
                    "their running steps (again to force)",
                    signal=sig.name,
                )
            else:
                self.forced = sig
                self.log.info(
                    "supervisor_forced",
                    f"{sig.name} again: the worker processes exit at once",
                    signal=sig.name,
                )
            self.forward(sig)

    def reap(self, child: _Child, now: float) -> None:
        assert child.proc is not None
        status = child.proc.returncode
        pid = child.proc.pid
        child.proc = None
        child.status = status
        if self.stopping:
            return
        ran = now - child.started
        child.fast_exits = child.fast_exits + 1 if ran < FAST_EXIT else 0
        what = (
            f"worker process {child.index} (pid {pid}) exited ({_describe(status)}) "
            f"after {ran:.1f} s"
        )
        if status == 2 and ran < FAST_EXIT:
            self.give_up(
                f"{what}: bad input (its error is above), not restarting: every process "
                "would fail the same way",
                child,
            )
            return
        if child.fast_exits >= MAX_FAST_EXITS:
            self.give_up(
                f"{what}; it exited within {FAST_EXIT:.0f} s of starting {child.fast_exits} "
                "times in a row, so the supervisor gives up (see its errors above)",
                child,
            )
            return
        pause = backoff_delay(child.fast_exits + 1, _FIRST_PAUSE, 2.0, _MAX_PAUSE)
        child.restart_at = now + pause
        self.log.info(
            "process_exited",
            f"{what} without being asked to stop; restarting it in {pause:g} s",
            index=child.index,
            pid=pid,
            status=status,
            ran_seconds=round(ran, 3),
            restart_in=pause,
        )

    def give_up(self, message: str, child: _Child) -> None:
        self.gave_up = message
        self.stopping = True
        self.log.error("supervisor_gave_up", message, index=child.index)
        self.forward(signal.SIGTERM)

    def loop(self) -> int:
        """Run until every child has stopped after a signal (or a give-up); the exit
        status."""
        for child in self.children:
            self.start(child)
        self.log.info(
            "supervisor_started",
            f"worker supervisor started {len(self.children)} worker processes (pids "
            f"{', '.join(str(c.proc.pid) for c in self.children if c.proc)}; Ctrl-C to stop)",
            pid=os.getpid(),
            processes=len(self.children),
            pids=[c.proc.pid for c in self.children if c.proc],
        )
        while True:
            self.handle_signals()
            now = time.monotonic()
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    self.reap(child, now)
                elif (
                    not self.stopping
                    and child.proc is None
                    and child.restart_at is not None
                    and child.restart_at <= now
                ):
                    pid = self.start(child)
                    self.log.info(
                        "process_restarted",
                        f"worker process {child.index} restarted (pid {pid})",
                        index=child.index,
                        pid=pid,
                    )
            if self.stopping and not self.live():
                return self.status()
            time.sleep(_TICK)

    def status(self) -> int:
        if self.forced is not None:
            return 128 + self.forced.value
        if self.gave_up is not None:
            return 1
        asked = {-int(s) for s in self.signals} | {-int(signal.SIGTERM)}
        failed = [
            c
            for c in self.children
            if c.status is not None and c.status != 0 and c.status not in asked
        ]
        for child in failed:
            assert child.status is not None
            self.log.error(
                "process_failed",
                f"worker process {child.index} stopped with {_describe(child.status)}",
                index=child.index,
                status=child.status,
            )
        return 1 if failed else 0


def run_processes(commands: Sequence[list[str]], as_json: bool) -> int:
    """Supervise one child per command until a signal stops them; the exit status for
    ``wfe worker`` (0, 1, or 128 + the signal's number when forced)."""
    supervisor = _Supervisor(commands, _Log(as_json))
    previous = {
        sig: signal.signal(sig, supervisor._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        code = supervisor.loop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in supervisor.live():  # only after an error in the loop itself
            assert child.proc is not None
            child.proc.kill()
            child.proc.wait()
    supervisor.log.info(
        "supervisor_stopped",
        f"worker supervisor stopped (exit status {code})",
        exit_status=code,
    )
    return code
