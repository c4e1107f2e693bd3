"""The ``wfe`` command line: run workers, start and inspect workflows, publish events.

The store is chosen by ``--url`` (on ``wfe`` itself or on any command) or the
``WFE_URL`` environment variable, and defaults to ``sqlite:///wfe.db``. Every command
prints tables for people and, with ``--json``, one JSON document on stdout for scripts
(``wfe worker --json`` prints one JSON object per line). Errors go to stderr with a
non-zero exit status: 2 for bad input (a bad option, URL, JSON or duration, an unknown
definition, a missing ``--app``), 1 when the command could not do its job (an unknown
workflow id, a store that cannot be opened, a workflow not in a state that allows the
action).

The ``--app`` contract
----------------------
``--app module:attr`` (or ``WFE_APP``) names the workflows of your application. The
module is imported (the current directory is on the import path) and ``attr`` (a
dotted path inside the module) must be one of:

* a :class:`~wfe_core.Workflow` instance, or a ``Workflow`` subclass (instantiated with
  no arguments);
* a list, tuple or set of those;
* a function ``register(host)`` taking one argument: it is called with the
  :class:`~wfe_core.WorkflowHost` and registers what it wants (workflows, types,
  middleware, lifecycle handlers); it may be ``async``;
* a function taking no argument that returns any of the first two forms (it may be
  ``async``).

``wfe worker`` runs a host with these registered; ``wfe start`` needs them to build
the workflow's data of the right type from ``--data``; ``wfe show``, ``wfe list`` and
``wfe suspend|resume|terminate`` use them (optionally) to read data of your own types
(the demo's types are always known).

Commands other than ``worker`` and ``demo`` use the store as a client
(:func:`client_session`): nothing runs in the ``wfe`` process itself, the worker that
serves the store picks the work up. Data of a type the command does not know (no
``--app``) is shown as it is stored, marked "(raw: type not registered here)".

Services
--------
``worker`` and every command that writes through a host (``start``, ``publish``,
``suspend``, ``resume``, ``terminate``) take ``--lock-url``, ``--queue-url`` and
``--lifecycle-url`` (or ``WFE_LOCK_URL``, ``WFE_QUEUE_URL``, ``WFE_LIFECYCLE_URL``): give
them the same values as your workers, so that what a command queues lands on the queue
the workers read (e.g. ``--queue-url redis://host:6379/0``).

Reading
-------
``list`` and ``show`` only read: they open the store read-only where its provider
supports it (:func:`wfe_core.registry.open_store` with ``read_only=True``; SQLite does),
so they work on a read-only file and while another process holds the write lock. When
the store cannot be read that way (it does not exist yet, or its schema must first be
created or upgraded) they open it as the other commands do.

Signals
-------
``wfe worker`` stops on the first Ctrl-C or SIGTERM, waiting for running steps (exit
status 0). A second one forces the exit at once: one line on stderr, status 128 + the
signal's number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import asyncio
import base64
import collections.abc
import contextlib
import dataclasses
import decimal
import enum
import functools
import importlib
import inspect
import json
import logging
import math
import os
import re
import signal
import sys
import time
import types
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from wfe_core.capabilities import Capability
from wfe_core.definition import Workflow, WorkflowDefinition
from wfe_core.errors import (
    DefinitionError,
    EventNotFound,
    ProviderNotFound,
    SerializationError,
    WfeError,
    WorkflowNotFound,
    WorkflowNotRegistered,
)
from wfe_core.host import HostOptions, WorkflowHost
from wfe_core.models import (
    Event,
    ExecutionError,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.registry import redact_url, supports_read_only, url_scheme
from wfe_core.serialization import Undecodable

__all__ = [
    "DEFAULT_URL",
    "apply_app",
    "cli",
    "client_session",
    "coerce",
    "jsonable",
    "load_app",
    "main",
    "parse_duration",
]

DEFAULT_URL = "sqlite:///wfe.db"
"""The store used when neither ``--url`` nor ``WFE_URL`` is given."""

T = TypeVar("T")

_APP_HELP = (
    "Your workflows, as module:attr (or WFE_APP): a Workflow, a Workflow class, a list of "
    "them, a function returning them, or a function register(host)."
)


# --------------------------------------------------------------------------------------
# Settings, running coroutines, errors
# --------------------------------------------------------------------------------------


@dataclass
class _Settings:
    """What the ``wfe`` group was given."""

    url: str


def _url(url: str | None) -> str:
    """The effective store URL: the command's ``--url``, else the group's (or WFE_URL)."""
    if url:
        return url
    ctx = click.get_current_context()
    settings = ctx.find_object(_Settings)
    return settings.url if settings is not None else DEFAULT_URL


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` and turn wfe's errors into clear command-line errors."""
    try:
        return asyncio.run(coro)
    except click.ClickException:
        raise
    except WorkflowNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    except ProviderNotFound as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from exc
    except WfeError as exc:
        raise click.ClickException(f"{exc} ({type(exc).__name__})") from exc
    except KeyboardInterrupt:
        raise click.Abort() from None


@dataclass(frozen=True)
class _Services:
    """Where a host takes its lock, queue and lifecycle publisher from, when not from
    the store (``--lock-url``, ``--queue-url``, ``--lifecycle-url``)."""

    lock_url: str | None = None
    queue_url: str | None = None
    lifecycle_url: str | None = None


_SERVICE_OPTIONS = (
    ("--lock-url", "lock_url", "WFE_LOCK_URL", "lock", "Take the distributed lock from"),
    ("--queue-url", "queue_url", "WFE_QUEUE_URL", "queue", "Take the work queue from"),
    (
        "--lifecycle-url",
        "lifecycle_url",
        "WFE_LIFECYCLE_URL",
        "lifecycle",
        "Publish lifecycle events through",
    ),
)


def _service_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--lock-url``, ``--queue-url`` and ``--lifecycle-url`` (env ``WFE_LOCK_URL``,
    ``WFE_QUEUE_URL``, ``WFE_LIFECYCLE_URL``) to a command; it receives them as one
    ``services`` argument. Every command that writes through a host takes them, so that
    what it queues reaches workers that take their queue from another service."""
    for flag, name, env, _role, text in reversed(_SERVICE_OPTIONS):
        command = click.option(
            flag,
            name,
            envvar=env,
            default=None,
            metavar="URL",
            help=f"{text} another service, e.g. redis://host:6379/0 (env: {env}); use "
            "the same as your workers.",
        )(command)

    @functools.wraps(command)  # keeps the options click collected on it
    def with_services(*args: Any, **kwargs: Any) -> Any:
        services = _Services(**{name: kwargs.pop(name) for _f, name, *_ in _SERVICE_OPTIONS})
        return command(*args, services=services, **kwargs)

    return with_services


def _open_host(
    url: str,
    *,
    services: _Services | None = None,
    options: HostOptions | None = None,
    read_only: bool = False,
) -> WorkflowHost:
    """``WorkflowHost.from_url`` with bad URLs reported as bad ``--url`` (or
    ``--lock-url`` ...) values."""
    services = services or _Services()
    extra: dict[str, Any] = {"read_only": True} if read_only else {}
    try:
        return WorkflowHost.from_url(
            url,
            lock_url=services.lock_url,
            queue_url=services.queue_url,
            lifecycle_url=services.lifecycle_url,
            options=options,
            **extra,
        )
    except (ProviderNotFound, ValueError, TypeError) as exc:
        hint, message = "--url", str(exc)
        for flag, name, _env, role, _text in _SERVICE_OPTIONS:
            value = getattr(services, name)
            if value is not None and (
                redact_url(value) in message or f"provides no {role} provider" in message
            ):
                hint = flag
        raise click.BadParameter(message, param_hint=hint) from exc
    except WfeError as exc:
        raise click.ClickException(f"cannot open the store {redact_url(url)}: {exc}") from exc


@asynccontextmanager
async def client_session(host: WorkflowHost) -> AsyncIterator[WorkflowHost]:
    """Use a host as a client without starting it: the store is made ready and the lock,
    queue and lifecycle providers run, but no consumer or poller does, so nothing
    executes in this process. Everything is stopped and closed on exit."""
    started: list[Callable[[], Awaitable[None]]] = []
    try:
        await host.persistence.ensure_store_exists()
        for part in (host.lock_provider, host.queue_provider, host.lifecycle):
            await part.start()
            started.append(part.stop)
        yield host
    finally:
        for stop in reversed(started):
            with contextlib.suppress(Exception):
                await stop()
        with contextlib.suppress(Exception):
            await host.persistence.close()


async def _prepared(host: WorkflowHost, app: str | None) -> WorkflowHost:
    """``host`` with the demo's types and ``app`` registered (closed if that fails)."""
    try:
        from wfe_core.demo import OrderData, Payment

        host.register_type(OrderData, Payment)  # so `wfe show` reads the demo's orders
        if app is not None:
            await apply_app(host, app)
    except BaseException:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise
    return host


def _store_error(url: str, exc: WfeError) -> BaseException:
    """What a command reports for a wfe error raised while it used the store."""
    if isinstance(exc, WorkflowNotFound | EventNotFound | SerializationError | ProviderNotFound):
        return exc
    return click.ClickException(f"{redact_url(url)}: {exc} ({type(exc).__name__})")


@asynccontextmanager
async def _client(
    url: str, app: str | None = None, services: _Services | None = None
) -> AsyncIterator[WorkflowHost]:
    """A client host on ``url`` with ``app`` registered (see :func:`client_session`),
    taking its lock, queue and lifecycle publisher from ``services`` where given."""
    host = await _prepared(_open_host(url, services=services), app)
    try:
        async with client_session(host):
            yield host
    except WfeError as exc:
        error = _store_error(url, exc)
        if error is exc:
            raise
        raise error from exc


@asynccontextmanager
async def _reader(url: str, app: str | None = None) -> AsyncIterator[WorkflowHost]:
    """A host for commands that only read (``list``, ``show``): the store is opened
    read-only where its provider supports it (``open_store(url, read_only=True)``: for
    SQLite, a read-only file or one another process holds the write lock on can be
    read), and nothing but the store is started. When the store cannot be read that
    way -- it does not exist yet, or its schema must first be created or upgraded --
    it is opened as every other command opens it."""
    try:
        read_only = supports_read_only(url)
    except (ProviderNotFound, ValueError, TypeError):
        read_only = False  # _open_host reports it
    if read_only:
        host = await _prepared(_open_host(url, read_only=True), app)
        try:
            await host.persistence.ensure_store_exists()
        except WfeError:
            with contextlib.suppress(Exception):
                await host.persistence.close()
            read_only = False
        except BaseException:
            with contextlib.suppress(Exception):
                await host.persistence.close()
            raise
    if not read_only:
        async with _client(url, app) as host:
            yield host
        return
    try:
        yield host
    except WfeError as exc:
        error = _store_error(url, exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        with contextlib.suppress(Exception):
            await host.persistence.close()


def _need_app(app: str | None, command: str) -> str:
    if not app:
        raise click.UsageError(
            f"wfe {command} needs your workflow definitions: pass --app module:attr (or set "
            "WFE_APP), the same one your workers use, e.g. --app wfe_core.demo:workflows"
        )
    return app


# --------------------------------------------------------------------------------------
# --app
# --------------------------------------------------------------------------------------


def _import_target(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(
            f"{spec!r} is not module:attr, e.g. 'myapp.workflows:workflows'", param_hint="--app"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise click.BadParameter(
                f"cannot import {module_name!r}: no module named {exc.name!r} (the current "
                "directory and PYTHONPATH are searched)",
                param_hint="--app",
            ) from exc
        raise click.BadParameter(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", param_hint="--app"
        ) from exc
    except Exception as exc:
        raise click.BadParameter(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", param_hint="--app"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.BadParameter(
                f"module {module_name!r} has no attribute {attr!r}", param_hint="--app"
            ) from None
    return target


def _as_workflows(obj: Any, spec: str) -> list[Workflow[Any]] | None:
    """The workflows ``obj`` stands for, or None when it is no such form."""
    if isinstance(obj, Workflow):
        return [obj]
    if isinstance(obj, type) and issubclass(obj, Workflow):
        return [obj()]
    if isinstance(obj, list | tuple | set | frozenset):
        found: list[Workflow[Any]] = []
        for i, item in enumerate(obj):
            one = _as_workflows(item, spec) if not isinstance(item, list | tuple) else None
            if one is None:
                raise click.BadParameter(
                    f"{spec}: item {i} is {type(item).__name__}, not a Workflow instance or "
                    "subclass",
                    param_hint="--app",
                )
            found.extend(one)
        return found
    return None


def _required_positional(fn: Callable[..., Any]) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return sum(
        1
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


async def apply_app(host: WorkflowHost, spec: str) -> list[WorkflowDefinition]:
    """Register on ``host`` what ``--app spec`` names (see the module docstring for the
    forms it may take); return the definitions registered."""
    target = _import_target(spec)
    load_app_into = load_app(target, spec)
    try:
        result = load_app_into(host)
        if inspect.isawaitable(result):
            await result
    except click.ClickException:
        raise
    except DefinitionError as exc:
        raise click.ClickException(f"--app {spec}: invalid workflow: {exc}") from exc
    except Exception as exc:
        raise click.ClickException(
            f"--app {spec}: registering the workflows failed: {type(exc).__name__}: {exc}"
        ) from exc
    definitions = host.registry.all()
    if not definitions:
        raise click.BadParameter(f"{spec} registered no workflows", param_hint="--app")
    return definitions


def load_app(target: Any, spec: str = "--app") -> Callable[[WorkflowHost], Awaitable[None] | None]:
    """Turn an ``--app`` target into ``apply(host)`` that registers it on a host.

    Raises ``click.BadParameter`` when ``target`` is none of the accepted forms.
    """
    direct = _as_workflows(target, spec)
    if direct is not None:

        def register_all(host: WorkflowHost) -> None:
            for wf in direct:
                host.register_workflow(wf)

        return register_all
    if callable(target):
        arity = _required_positional(target)
        if arity == 1:
            return target  # type: ignore[no-any-return]
        if arity == 0:

            async def from_factory(host: WorkflowHost) -> None:
                produced = target()
                if inspect.isawaitable(produced):
                    produced = await produced
                found = _as_workflows(produced, spec)
                if found is None:
                    raise click.BadParameter(
                        f"{spec}() returned {type(produced).__name__}; a factory must return a "
                        "Workflow or a list of Workflows",
                        param_hint="--app",
                    )
                for wf in found:
                    host.register_workflow(wf)

            return from_factory
        raise click.BadParameter(
            f"{spec} is a function of {arity} required arguments; expected register(host) "
            "or a factory taking none",
            param_hint="--app",
        )
    raise click.BadParameter(
        f"{spec} is {type(target).__name__}; expected a Workflow, a Workflow class, a list of "
        "them, a function returning them, or a function register(host)",
        param_hint="--app",
    )


# --------------------------------------------------------------------------------------
# Input parsing: JSON data, durations, dates
# --------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> timedelta:
    """Parse ``7d``, ``12h``, ``30m``, ``45s``, ``1h30m``, ``2w``, ``500ms``.

    Raises ``ValueError`` with the accepted forms for anything else, and for a
    duration longer than ``timedelta`` holds (999,999,999 days).
    """
    s = re.sub(r"\s+", "", text).lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        pos = match.end()
    if not s or pos != len(s):
        raise ValueError(
            f"{_short(text)!r} is not a duration: use a number and a unit (w, d, h, m, s, "
            "ms), e.g. 7d, 12h, 30m, 45s or 1h30m"
        )
    try:
        if not math.isfinite(total):
            raise OverflowError
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(
            f"{_short(text)!r} is too long a duration: the longest is "
            f"{timedelta.max.days:,} days (about 2.7 million years)"
        ) from None


def _short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for a message (a huge input stays readable)."""
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text):,} characters)"


def _duration_param(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_json(text: str | None, option: str = "--data") -> Any:
    """Parse a JSON option (``@path`` reads a file, ``-`` or ``@-`` reads stdin; both
    must be UTF-8). Anything that is not plain, standard JSON -- ``NaN`` or
    ``Infinity``, a number too large for a float, an integer of more digits than Python
    converts, nesting deeper than Python's parser goes, a lone surrogate -- is refused
    with ``click.BadParameter`` naming ``option``."""
    if text is None:
        return None
    source = "JSON"
    if text in ("-", "@-"):
        text, source = _read_stdin(option), "JSON from stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint=option
            ) from exc
        text, source = _utf8(raw, str(path), option), f"JSON in {path}"
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        line = exc.doc.splitlines()[exc.lineno - 1] if exc.doc.splitlines() else ""
        pointer = f"\n    {line}\n    {' ' * (exc.colno - 1)}^" if len(line) <= 200 else ""
        raise click.BadParameter(
            f"malformed {source}: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos}){pointer}",
            param_hint=option,
        ) from exc
    except RecursionError:
        raise click.BadParameter(
            f"{source} is nested too deeply (more than about {sys.getrecursionlimit()} "
            "levels of arrays and objects)",
            param_hint=option,
        ) from None
    except ValueError as exc:  # NaN, 1e999, an integer of more than 4300 digits
        raise click.BadParameter(f"{source} cannot be used: {exc}", param_hint=option) from None
    where = _lone_surrogate(value)
    if where is not None:
        raise click.BadParameter(
            f"{source} holds a lone surrogate (a \\ud800-\\udfff escape without its pair) "
            f"at {where}: that is not Unicode text and cannot be stored",
            param_hint=option,
        )
    return value


def _read_stdin(option: str) -> str:
    """All of stdin as UTF-8 text (refused with ``click.BadParameter`` if it is not)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return _utf8(buffer.read(), "stdin", option)
    text = sys.stdin.read()
    # A text stream decoded with "surrogateescape" (the C locale) hides bytes that are
    # not UTF-8 as lone surrogates.
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise click.BadParameter(
            f"stdin is not UTF-8 text (undecodable byte at character {bad.start()})",
            param_hint=option,
        )
    return text


def _utf8(raw: bytes, where: str, option: str) -> str:
    """``raw`` decoded as UTF-8 (a byte-order mark is dropped), or ``click.BadParameter``."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(
            f"{where} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            "cannot be decoded (save it as UTF-8)",
            param_hint=option,
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {_short(text)} is too large for a float")
    return number


def _lone_surrogate(value: Any) -> str | None:
    """The path (``data.items[2].name``) of the first string or key in parsed JSON that
    holds a lone surrogate, or None. Iterative: any depth json.loads returned is fine."""
    stack: list[tuple[Any, str]] = [(value, "data")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return path
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, dict):
            for key, v in item.items():
                sub = f"{path}[{json.dumps(key)}]"
                if _SURROGATE.search(key) is not None:
                    return sub
                stack.append((v, sub))
    return None


def _parse_when(text: str, option: str) -> datetime:
    """An ISO 8601 date-time; one without an offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{_short(text)!r} is not an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z",
            param_hint=option,
        ) from exc
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        raise click.BadParameter(
            f"{_short(text)!r} is out of range: in UTC it falls outside the years 1 to 9999",
            param_hint=option,
        ) from None


class _CoerceError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _pydantic_model(tp: Any) -> bool:
    mod = sys.modules.get("pydantic")
    base = getattr(mod, "BaseModel", None)
    return isinstance(base, type) and isinstance(tp, type) and issubclass(tp, base)


def coerce(value: Any, tp: Any, path: str = "data") -> Any:
    """Build a value of type ``tp`` from parsed JSON ``value`` (dataclasses, pydantic
    models, Enums, Decimal, datetime, UUID, timedelta, containers, Optional / unions).

    Raises ``ValueError`` naming the field (``data.items[0].price: ...``).
    """
    try:
        return _coerce(value, tp, path)
    except _CoerceError as exc:
        raise ValueError(str(exc)) from None


def _coerce(value: Any, tp: Any, path: str) -> Any:
    if tp is None or tp is Any or tp is object:
        return value
    if isinstance(tp, typing.TypeVar):
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _coerce(value, args[0], path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems: list[str] = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except _CoerceError as exc:
                problems.append(str(exc).split(": ", 1)[-1])
        raise _CoerceError(path, " / ".join(problems) or f"expected {_type_name(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise _CoerceError(path, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin is not None:
        return _coerce_generic(value, origin, args, path, tp)
    if not isinstance(tp, type):
        return value
    if value is None:
        if tp is type(None):
            return None
        raise _CoerceError(path, f"expected {_type_name(tp)}, got null")
    if dataclasses.is_dataclass(tp):
        return _coerce_dataclass(value, tp, path)
    if _pydantic_model(tp):
        try:
            return tp.model_validate(value)  # type: ignore[attr-defined]
        except Exception as exc:
            raise _CoerceError(path, f"not a valid {tp.__name__}: {exc}") from exc
    if issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            if isinstance(value, str) and value in tp.__members__:
                return tp[value]
            members = ", ".join(repr(m.value) for m in tp)
            raise _CoerceError(path, f"{value!r} is not one of {members}") from None
    return _coerce_scalar(value, tp, path)


def _coerce_scalar(value: Any, tp: type, path: str) -> Any:
    got = type(value).__name__ if value is not None else "null"
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is decimal.Decimal:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                result = decimal.Decimal(str(value))
            except decimal.InvalidOperation:
                raise _CoerceError(path, f"{value!r} is not a decimal number") from None
            return result
    elif tp is datetime:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not an ISO 8601 date-time") from None
    elif tp is date:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not an ISO 8601 date") from None
    elif tp is dtime:
        if isinstance(value, str):
            try:
                return dtime.fromisoformat(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not an ISO 8601 time") from None
    elif tp is timedelta:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise _CoerceError(path, str(exc)) from None
        got = f"{got} (give seconds or a duration such as '30m')"
    elif tp is uuid.UUID:
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not a UUID") from None
    elif tp is bytes:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise _CoerceError(path, "expected base64 text") from None
    elif tp in (dict, list):
        if isinstance(value, tp):
            return value
    elif tp in (tuple, set, frozenset):
        if isinstance(value, list):
            return tp(value)
    elif isinstance(value, tp):
        return value
    else:
        raise _CoerceError(path, f"cannot build a {tp.__name__} from JSON ({got})")
    raise _CoerceError(path, f"expected {_type_name(tp)}, got {got}")


def _coerce_generic(value: Any, origin: Any, args: tuple[Any, ...], path: str, tp: Any) -> Any:
    abc = collections.abc
    if origin in (
        list,
        set,
        frozenset,
        abc.Sequence,
        abc.MutableSequence,
        abc.Set,
        abc.MutableSet,
        abc.Iterable,
        abc.Collection,
    ):
        if not isinstance(value, list):
            raise _CoerceError(path, f"expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin in (set, abc.Set, abc.MutableSet):
            return set(items)
        return frozenset(items) if origin is frozenset else items
    if origin is tuple:
        if not isinstance(value, list):
            raise _CoerceError(path, f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise _CoerceError(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(v, args[i] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)
        )
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if not isinstance(value, dict):
            raise _CoerceError(path, f"expected an object, got {type(value).__name__}")
        key_t, val_t = args if len(args) == 2 else (Any, Any)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            sub = f"{path}[{json.dumps(k)}]"
            key = k if key_t in (Any, str) else _coerce_key(k, key_t, sub)
            out[key] = _coerce(v, val_t, sub)
        return out
    if isinstance(origin, type) and isinstance(value, origin):
        return value
    raise _CoerceError(path, f"cannot build {_type_name(tp)} from JSON")


def _coerce_key(key: str, tp: Any, path: str) -> Any:
    if tp is int:
        try:
            return int(key)
        except ValueError:
            raise _CoerceError(path, f"key {key!r} is not an integer") from None
    return _coerce(key, tp, path)


def _coerce_dataclass(value: Any, tp: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise _CoerceError(
            path, f"expected an object for {tp.__name__}, got {type(value).__name__}"
        )
    try:
        hints = typing.get_type_hints(tp)
    except Exception:
        hints = {}
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = [k for k in value if k not in fields or not fields[k].init]
    if unknown:
        known = ", ".join(n for n, f in fields.items() if f.init)
        raise _CoerceError(
            path, f"{tp.__name__} has no field {', '.join(map(repr, unknown))} (fields: {known})"
        )
    kwargs = {name: _coerce(v, hints.get(name, Any), f"{path}.{name}") for name, v in value.items()}
    missing = [
        n
        for n, f in fields.items()
        if f.init
        and n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _CoerceError(path, f"{tp.__name__} needs the field(s) {', '.join(missing)}")
    try:
        return tp(**kwargs)
    except Exception as exc:
        raise _CoerceError(path, f"{tp.__name__}(...) failed: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: dataclasses and models as objects, Decimal and UUID as
    strings, date-times in ISO 8601, durations in seconds, sets and tuples as lists, and
    an :class:`~wfe_core.serialization.Undecodable` (stored data of a type not
    registered here) as the JSON it was stored as."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Undecodable):
        try:
            return json.loads(value.raw)
        except (ValueError, RecursionError):
            return value.raw
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and _pydantic_model(type(value)):
        return dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        if isinstance(value, set | frozenset):
            with contextlib.suppress(TypeError):
                items.sort()
        return items
    return repr(value)


def _emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _console() -> Console:
    """A console for tables; when stdout is not a terminal (a pipe, a file) tables get
    room for full ids instead of rich's default 80 columns."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, soft_wrap=False, width=160)
    return console


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _clock(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%H:%M:%S")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _summary_json(inst: WorkflowInstance) -> dict[str, Any]:
    return {
        "id": inst.id,
        "definition": inst.workflow_definition_id,
        "version": inst.version,
        "status": inst.status.value,
        "reference": inst.reference,
        "description": inst.description,
        "create_time": _iso(inst.create_time),
        "complete_time": _iso(inst.complete_time),
        "next_execution": _iso(inst.next_execution),
        "revision": inst.revision,
    }


def _pointer_json(p: ExecutionPointer) -> dict[str, Any]:
    return {
        "id": p.id,
        "step_id": p.step_id,
        "step_name": p.step_name,
        "status": p.status.value,
        "active": p.active,
        "start_time": _iso(p.start_time),
        "end_time": _iso(p.end_time),
        "sleep_until": _iso(p.sleep_until),
        "event_name": p.event_name,
        "event_key": p.event_key,
        "event_published": p.event_published,
        "retry_count": p.retry_count,
        "outcome": jsonable(p.outcome),
        "children": list(p.children),
        "scope": list(p.scope),
    }


def _error_json(e: ExecutionError) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": _iso(e.error_time),
        "pointer_id": e.execution_pointer_id,
        "type": e.error_type,
        "message": e.message,
        "traceback": e.traceback,
    }


_STATUS_STYLE = {
    "runnable": "cyan",
    "suspended": "yellow",
    "complete": "green",
    "terminated": "red",
    "failed": "red",
    "cancelled": "dim",
    "waiting_for_event": "cyan",
    "sleeping": "cyan",
}


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def _read_error(exc: SerializationError, app: str | None) -> click.ClickException:
    hint = (
        ""
        if app
        else "; pass --app module:attr (or set WFE_APP) so wfe knows your workflows' data types"
    )
    return click.ClickException(f"cannot read the workflow data: {exc}{hint}")


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------

_url_option = click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Store URL (default: the one given to wfe, else $WFE_URL, else sqlite:///wfe.db).",
)
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
)


class _FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan``, ``inf`` and ``-inf`` (a NaN
    passes every range check, and no setting means forever)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


_MAX_INT64 = 2**63 - 1
"""The largest integer every store keeps (64-bit)."""


def _app_option(help_text: str = _APP_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--app", envvar="WFE_APP", default=None, metavar="MODULE:ATTR", help=help_text
    )


@click.group(name="wfe", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="WFE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Store URL, e.g. sqlite:///wfe.db, postgresql://user@host/db, memory:// (env: WFE_URL).",
)
@click.version_option(package_name="wfe-core", prog_name="wfe")
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """wfe: durable, event-driven workflows.

    Run workers, start and inspect workflows, publish events. Try `wfe demo`.
    """
    ctx.obj = _Settings(url=url)


@cli.command()
@_app_option()
@_url_option
@_service_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1_000_000),
    default=None,
    help="Workflow passes run at once (HostOptions.max_concurrent_workflows).",
)
@click.option(
    "--poll-interval",
    type=_FiniteFloatRange(min=0.01),
    default=None,
    help="Seconds between looks for due work (HostOptions.poll_interval).",
)
@click.option(
    "--stop-timeout",
    type=_FiniteFloatRange(min=0),
    default=None,
    help="Seconds stopping waits for running steps (HostOptions.stop_timeout).",
)
@click.option(
    "--steps/--no-steps",
    default=True,
    show_default=True,
    help="Log every step, not only workflows.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Level of wfe's own log (stderr).",
)
@_json_option
def worker(
    app: str | None,
    url: str | None,
    services: _Services,
    concurrency: int | None,
    poll_interval: float | None,
    stop_timeout: float | None,
    steps: bool,
    log_level: str,
    as_json: bool,
) -> None:
    """Run a worker: a host running the workflows of --app until Ctrl-C or SIGTERM.

    --app module:attr names your workflows: a Workflow instance or class, a list of
    them, a function returning them, or a function register(host) (sync or async)
    that registers what it wants. Stopping waits for running steps, then exits 0.

    A second Ctrl-C or SIGTERM while it waits forces the exit: it stops at once with
    one line on stderr and exit status 128 + the signal's number (130 for Ctrl-C, 143
    for SIGTERM), as if killed by it. Steps still running are abandoned; as after a
    crash, they run again (on this or another worker) once their lock lease expires.
    """
    spec = _need_app(app, "worker")
    store = _url(url)
    fields: dict[str, Any] = {}
    if concurrency is not None:
        fields["max_concurrent_workflows"] = concurrency
    if poll_interval is not None:
        fields["poll_interval"] = poll_interval
    if stop_timeout is not None:
        fields["stop_timeout"] = stop_timeout
    _setup_logging(log_level)
    log = _WorkerLog(as_json, steps)
    try:
        options = HostOptions(**fields)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(_worker(store, spec, services, options, log))


def _setup_logging(level: str) -> None:
    logger = logging.getLogger("wfe")
    logger.setLevel(level.upper())
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        logger.addHandler(handler)
        logger.propagate = False


class _WorkerLog:
    """Prints what a worker does: lifecycle events, start and stop."""

    _WORDS = {
        LifecycleEventType.WORKFLOW_STARTED: ("started", "cyan"),
        LifecycleEventType.WORKFLOW_RESUMED: ("resumed", "cyan"),
        LifecycleEventType.WORKFLOW_SUSPENDED: ("suspended", "yellow"),
        LifecycleEventType.WORKFLOW_COMPLETED: ("completed", "green"),
        LifecycleEventType.WORKFLOW_TERMINATED: ("terminated", "red"),
        LifecycleEventType.WORKFLOW_ERROR: ("step failed", "red"),
        LifecycleEventType.STEP_STARTED: ("step started", "dim"),
        LifecycleEventType.STEP_COMPLETED: ("step done", "dim"),
    }

    def __init__(self, as_json: bool, steps: bool) -> None:
        self.as_json = as_json
        self.steps = steps
        self.console = Console(highlight=False, soft_wrap=True)

    def info(self, kind: str, message: str, **details: Any) -> None:
        if self.as_json:
            doc = {"event": kind, "time": datetime.now(UTC).isoformat(), **details}
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            stamp = datetime.now().strftime("%H:%M:%S")
            self.console.print(f"[dim]{stamp}[/dim] [bold]{message}[/bold]")

    def handle(self, event: LifecycleEvent) -> None:
        step_event = event.type in (
            LifecycleEventType.STEP_STARTED,
            LifecycleEventType.STEP_COMPLETED,
        )
        if step_event and not self.steps:
            return
        if self.as_json:
            click.echo(
                json.dumps(
                    {
                        "event": event.type.value,
                        "time": event.event_time.isoformat(),
                        "workflow_id": event.workflow_id,
                        "definition": event.workflow_definition_id,
                        "version": event.version,
                        "reference": event.reference,
                        "step_id": event.step_id,
                        "step_name": event.step_name,
                        "pointer_id": event.execution_pointer_id,
                        "message": event.message,
                    },
                    ensure_ascii=False,
                )
            )
            return
        word, style = self._WORDS.get(event.type, (event.type.value, ""))
        stamp = event.event_time.astimezone().strftime("%H:%M:%S")
        what = f"{event.workflow_definition_id} v{event.version} {event.workflow_id}"
        if event.reference:
            what += f" ref={event.reference}"
        if step_event or event.type is LifecycleEventType.WORKFLOW_ERROR:
            what += f"  step {event.step_name or event.step_id}"
        if event.message:
            what += f": {event.message}"
        indent = "  " if step_event else ""
        self.console.print(
            f"[dim]{stamp}[/dim] {indent}[{style or 'default'}]{word:<12}"
            f"[/{style or 'default'}] {what}",
            markup=True,
        )


def _force_exit(signum: int, log: _WorkerLog) -> NoReturn:
    """End the worker process now (a second signal): one line on stderr (and a
    ``worker_forced`` JSON line with ``--json``), exit status ``128 + signum``. No
    cleanup runs: like a crash, which the store is built to survive."""
    name = signal.Signals(signum).name
    status = 128 + signum
    with contextlib.suppress(Exception):  # stdout may be mid-write in the main thread
        if log.as_json:
            log.info("worker_forced", f"{name} again", signal=name, exit_status=status)
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"wfe worker: {name} again: exiting now with status {status}, without waiting "
            "for running steps (they run again once their lock lease expires)\n"
        )
        sys.stderr.flush()
    os._exit(status)


async def _worker(
    url: str,
    spec: str,
    services: _Services,
    options: HostOptions,
    log: _WorkerLog,
) -> None:
    host = _open_host(url, services=services, options=options)
    try:
        definitions = await apply_app(host, spec)
    except BaseException:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise
    host.on_lifecycle_event(log.handle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM]
    received: list[str] = []

    def force(signum: int, frame: types.FrameType | None) -> None:
        _force_exit(signum, log)

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            _force_exit(sig, log)
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

    installed: list[signal.Signals] = []
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        try:
            await host.start()
        except WfeError as exc:
            with contextlib.suppress(Exception):
                await host.stop()
                await host.persistence.close()
            raise click.ClickException(
                f"cannot start the worker on {redact_url(url)}: {exc}"
            ) from exc
        names = [f"{d.id} v{d.version}" for d in definitions]
        if url_scheme(url) == "memory" and not log.as_json:
            log.console.print(
                "[yellow]note: a memory:// store lives in this process only; other wfe "
                "commands cannot reach it[/yellow]"
            )
        log.info(
            "worker_started",
            f"worker started on {redact_url(url)} with {', '.join(names)} (Ctrl-C to stop)",
            url=redact_url(url),
            pid=os.getpid(),
            workflows=[{"id": d.id, "version": d.version} for d in definitions],
        )
        try:
            await stop.wait()
        finally:
            log.info(
                "worker_stopping",
                f"{received[0] if received else 'stop'}: stopping, waiting for running "
                "steps (again to force)",
                signal=received[0] if received else None,
            )
            await host.stop()
        log.info("worker_stopped", "worker stopped")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@cli.command()
@click.argument("definition")
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="The workflow's data as JSON (@file reads a file, - reads stdin), built "
    "into the definition's data type.",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Definition version (default: the newest registered).",
)
@click.option("--reference", default=None, help="Your own reference for the instance.")
@_app_option()
@_url_option
@_service_options
@_json_option
def start(
    definition: str,
    data: str | None,
    version: int | None,
    reference: str | None,
    app: str | None,
    url: str | None,
    services: _Services,
    as_json: bool,
) -> None:
    """Start a workflow instance of DEFINITION; print its id.

    Needs --app (or WFE_APP) to know the definition and build its data type from --data.
    The instance runs on whichever worker serves this store.
    """
    spec = _need_app(app, "start")
    payload = _parse_json(data)
    store = _url(url)

    async def go() -> dict[str, Any]:
        async with _client(store, spec, services) as host:
            try:
                found = host.registry.get(definition, version)
            except WorkflowNotRegistered:
                known = ", ".join(sorted(f"{d.id} v{d.version}" for d in host.registry.all()))
                what = repr(definition) + (f" version {version}" if version else "")
                raise click.BadParameter(
                    f"workflow definition {what} is not registered by --app {spec} "
                    f"(it registers: {known})",
                    param_hint="DEFINITION",
                ) from None
            try:
                value = coerce(payload, found.data_type) if data is not None else None
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc
            try:
                wid = await host.start_workflow(
                    found.id, value, version=found.version, reference=reference
                )
            except (TypeError, SerializationError) as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc
            return {
                "id": wid,
                "definition": found.id,
                "version": found.version,
                "reference": reference,
                "status": WorkflowStatus.RUNNABLE.value,
            }

    result = _run(go())
    if as_json:
        _emit_json(result)
    else:
        click.echo(f"started {result['definition']} v{result['version']}: {result['id']}")


@cli.command()
@click.argument("name")
@click.argument("key")
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="The event's data as JSON (@file reads a file, - reads stdin).",
)
@click.option(
    "--effective-date",
    default=None,
    metavar="ISO",
    help="The event's time (ISO 8601; without an offset it is UTC). Subscriptions "
    "made at or before it receive it; a future time holds it back.",
)
@_url_option
@_service_options
@_json_option
def publish(
    name: str,
    key: str,
    data: str | None,
    effective_date: str | None,
    url: str | None,
    services: _Services,
    as_json: bool,
) -> None:
    """Publish event NAME with KEY: workflows waiting for it resume."""
    payload = _parse_json(data)
    when = _parse_when(effective_date, "--effective-date") if effective_date else None
    if not name:
        raise click.BadParameter("the event name must not be empty", param_hint="NAME")
    store = _url(url)

    async def go() -> str:
        async with _client(store, services=services) as host:
            return await host.publish_event(name, key, payload, when)

    event_id = _run(go())
    if as_json:
        _emit_json(
            {
                "id": event_id,
                "name": name,
                "key": key,
                "effective_date": _iso(when),
                "data": payload,
            }
        )
    else:
        click.echo(f"published {name} {key!r}: {event_id}")


@cli.command()
@click.argument("workflow_id", metavar="ID")
@_app_option("Register your workflows' data types (module:attr, or WFE_APP) to read their data.")
@_url_option
@_json_option
def show(workflow_id: str, app: str | None, url: str | None, as_json: bool) -> None:
    """Show a workflow instance: status, times, data, pointers and errors.

    ID may also be an event's id (as `wfe publish` prints it): then the event is shown,
    with the reason it was set aside if it was. Data of a type this command does not
    know (no --app) is shown as stored, marked "(raw: type not registered here)".
    """
    store = _url(url)

    async def go() -> tuple[WorkflowInstance, list[ExecutionError]] | Event:
        async with _reader(store, app) as host:
            try:
                inst = await host.get_workflow_instance(workflow_id)
            except SerializationError as exc:
                raise _read_error(exc, app) from exc
            except WorkflowNotFound:
                try:
                    return await host.persistence.get_event(workflow_id)
                except (EventNotFound, ValueError, TypeError):
                    raise click.ClickException(
                        f"{WorkflowNotFound(workflow_id)} (and no event has that id)"
                    ) from None
                except SerializationError as exc:
                    raise _read_error(exc, app) from exc
            return inst, await host.get_errors(workflow_id)

    found = _run(go())
    if isinstance(found, Event):
        _show_event(found, as_json)
        return
    inst, errors = found
    if as_json:
        doc = _summary_json(inst)
        doc["data"] = jsonable(inst.data)
        doc["pointers"] = [_pointer_json(p) for p in inst.execution_pointers]
        doc["errors"] = [_error_json(e) for e in errors]
        doc["set_aside"] = getattr(inst, "set_aside", None)
        doc["undecodable"] = [
            {"field": name, "reason": value.reason, "note": _RAW_NOTE}
            for name, value in _undecodable_values(inst)
        ]
        _emit_json(doc)
        return
    _print_instance(inst, errors)


def _show_event(event: Event, as_json: bool) -> None:
    """``wfe show`` of an event: name, key, time, state (and why it was set aside), data."""
    if as_json:
        _emit_json(
            {
                "kind": "event",
                "id": event.id,
                "name": event.event_name,
                "key": event.event_key,
                "event_time": _iso(event.event_time),
                "is_processed": event.is_processed,
                "set_aside": event.set_aside,
                "data": jsonable(event.event_data),
                "undecodable": (
                    [{"field": "event_data", "reason": event.event_data.reason, "note": _RAW_NOTE}]
                    if isinstance(event.event_data, Undecodable)
                    else []
                ),
            }
        )
        return
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("event", event.id)
    head.add_row("name", event.event_name)
    head.add_row("key", repr(event.event_key))
    head.add_row("time", _when(event.event_time))
    state = "processed" if event.is_processed else "waiting for delivery"
    head.add_row("state", "set aside" if event.set_aside is not None else state)
    if event.set_aside is not None:
        head.add_row("set aside", event.set_aside)
    head.add_row("data", _data_text(event.event_data))
    _console().print(head)


_RAW_NOTE = "raw: type not registered here"
"""How output marks a value shown as stored because its type is not known here."""


def _undecodable_values(inst: WorkflowInstance) -> list[tuple[str, Undecodable]]:
    """The instance's data and pointer values that could not be decoded, by field."""
    found: list[tuple[str, Undecodable]] = []
    if isinstance(inst.data, Undecodable):
        found.append(("data", inst.data))
    for p in inst.execution_pointers:
        for name in ("persistence_data", "event_data", "context_item", "outcome"):
            value = getattr(p, name, None)
            if isinstance(value, Undecodable):
                found.append((f"pointer {p.step_name or p.step_id} ({p.id}).{name}", value))
    return found


def _data_text(value: Any) -> str:
    """A value as one line of JSON, marked when it is shown as stored (undecodable)."""
    text = json.dumps(jsonable(value), ensure_ascii=False)
    return f"{text}  ({_RAW_NOTE})" if isinstance(value, Undecodable) else text


def _print_instance(inst: WorkflowInstance, errors: list[ExecutionError]) -> None:
    console = _console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("workflow", inst.id)
    head.add_row("definition", f"{inst.workflow_definition_id} v{inst.version}")
    head.add_row("status", _styled(inst.status.value))
    if inst.reference:
        head.add_row("reference", inst.reference)
    if inst.description:
        head.add_row("description", inst.description)
    head.add_row("created", _when(inst.create_time))
    head.add_row("completed", _when(inst.complete_time))
    if inst.status is WorkflowStatus.RUNNABLE:
        head.add_row("next run", _when(inst.next_execution))
    head.add_row("revision", str(inst.revision))
    set_aside = getattr(inst, "set_aside", None)
    if set_aside:
        head.add_row("set aside", str(set_aside))
    head.add_row("data", _data_text(inst.data))
    for name, value in _undecodable_values(inst):
        head.add_row("undecodable", value.reason if name == "data" else f"{name}: {value.reason}")
    console.print(head)
    pointers = Table(title="execution pointers (times UTC)", title_justify="left")
    with_outcome = any(p.outcome is not None for p in inst.execution_pointers)
    columns = ["#", "step", "status", "started", "ended", "waiting for", "tries"]
    for column in [*columns, "outcome"] if with_outcome else columns:
        pointers.add_column(
            column,
            justify="right" if column in ("#", "tries") else "left",
            no_wrap=column in ("#", "step", "status", "started", "ended"),
        )
    for i, p in enumerate(inst.execution_pointers, 1):
        waiting = ""
        if p.event_name is not None:
            waiting = f"{p.event_name} {p.event_key!r}" + (
                " (received)" if p.event_published else ""
            )
        if p.sleep_until is not None and p.end_time is None:
            waiting += (" or " if waiting else "") + f"until {_clock(p.sleep_until)}"
        row = [
            str(i),
            p.step_name or str(p.step_id),
            _styled(p.status.value),
            _clock(p.start_time),
            _clock(p.end_time),
            waiting,
            str(p.retry_count),
        ]
        if with_outcome:
            if p.outcome is None:
                row.append("")
            else:
                row.append(
                    _data_text(p.outcome) if isinstance(p.outcome, Undecodable) else repr(p.outcome)
                )
        pointers.add_row(*row)
    console.print(pointers)
    if not errors:
        console.print("errors: none")
        return
    table = Table(title="errors", title_justify="left")
    table.add_column("time")
    table.add_column("step")
    table.add_column("type")
    table.add_column("message")
    names = {p.id: p.step_name or str(p.step_id) for p in inst.execution_pointers}
    for e in errors:
        step = names.get(e.execution_pointer_id or "", e.execution_pointer_id or "-")
        table.add_row(_when(e.error_time), step, e.error_type or "-", e.message)
    console.print(table)


_STATUSES = [s.value for s in WorkflowStatus]


@cli.command("list")
@click.option(
    "--status",
    type=click.Choice(_STATUSES, case_sensitive=False),
    default=None,
    help="Only instances in this status.",
)
@click.option("--definition", default=None, help="Only instances of this definition id.")
@click.option("--reference", default=None, help="Only instances with this reference.")
@click.option(
    "--skip",
    type=click.IntRange(min=0, max=_MAX_INT64),
    default=0,
    show_default=True,
    help="Skip this many (in the listing order).",
)
@click.option(
    "--take",
    type=click.IntRange(min=1, max=10_000),
    default=20,
    show_default=True,
    help="Show at most this many.",
)
@click.option(
    "--oldest-first",
    is_flag=True,
    default=False,
    help="List the oldest instances first (default: newest first).",
)
@_app_option("Register your workflows' data types (module:attr, or WFE_APP) to read their data.")
@_url_option
@_json_option
def list_(
    status: str | None,
    definition: str | None,
    reference: str | None,
    skip: int,
    take: int,
    oldest_first: bool,
    app: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """List workflow instances, newest first (or --oldest-first), a page at a time,
    with the total that match."""
    store = _url(url)
    filters: dict[str, Any] = {
        "status": WorkflowStatus(status.lower()) if status else None,
        "definition_id": definition,
        "reference": reference,
    }

    async def go() -> tuple[list[WorkflowInstance], int]:
        async with _reader(store, app) as host:
            try:
                found = await host.persistence.query_workflows(
                    **filters, skip=skip, take=take + 1, newest_first=not oldest_first
                )
            except SerializationError as exc:
                raise _read_error(exc, app) from exc
            return found, await host.persistence.count_workflows(**filters)

    found, total = _run(go())
    more = len(found) > take
    page = found[:take]
    if as_json:
        _emit_json(
            {
                "workflows": [_summary_json(i) for i in page],
                "skip": skip,
                "take": take,
                "count": len(page),
                "more": more,
                "total": total,
            }
        )
        return
    console = _console()
    if not page:
        message = "no workflows on this page match" if skip else "no workflows match"
        console.print(message + (f" ({total} in all)" if skip and total else ""))
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("definition", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("reference")
    table.add_column("created")
    table.add_column("completed")
    for inst in page:
        table.add_row(
            inst.id,
            f"{inst.workflow_definition_id} v{inst.version}",
            _styled(inst.status.value),
            inst.reference or "",
            _when(inst.create_time),
            _when(inst.complete_time),
        )
    console.print(table)
    line = f"showing {skip + 1}-{skip + len(page)} of {total}"
    if more:
        line += f"; more: wfe list --skip {skip + take} --take {take}"
        line += " --oldest-first" if oldest_first else ""
    console.print(line)


def _control_command(action: str, done: str, allowed: str) -> click.Command:
    @click.command(action, help=f"{action.capitalize()} a workflow instance ({allowed}).")
    @click.argument("workflow_id", metavar="ID")
    @_app_option(
        "Register your workflows' data types (module:attr, or WFE_APP) to rewrite the instance."
    )
    @_url_option
    @_service_options
    @_json_option
    def command(
        workflow_id: str, app: str | None, url: str | None, services: _Services, as_json: bool
    ) -> None:
        store = _url(url)

        async def go() -> tuple[bool, WorkflowInstance]:
            async with _client(store, app, services) as host:
                try:
                    await host.get_workflow_instance(workflow_id)  # WorkflowNotFound
                    changed = await getattr(host, f"{action}_workflow")(workflow_id)
                    return changed, await host.get_workflow_instance(workflow_id)
                except SerializationError as exc:
                    raise _read_error(exc, app) from exc

        changed, after = _run(go())
        status = after.status.value
        pending = changed and after.control_request is not None
        if as_json:
            _emit_json(
                {
                    "id": workflow_id,
                    "action": action,
                    "changed": changed,
                    "status": status,
                    "pending": after.control_request,
                }
            )
        if not changed:
            raise click.ClickException(
                f"workflow {workflow_id} was not {done}: it is {status} ({allowed})"
            )
        if not as_json:
            if pending:
                # a worker (another process) holds it: the request is stored, and that
                # worker applies it within about a second
                click.echo(
                    f"workflow {workflow_id}: {action} requested; the worker running it "
                    f"applies it (status now: {status})"
                )
            else:
                click.echo(f"workflow {workflow_id} {done} (status: {status})")

    return command


cli.add_command(_control_command("suspend", "suspended", "only a runnable one can be suspended"))
cli.add_command(_control_command("resume", "resumed", "only a suspended one can be resumed"))
cli.add_command(
    _control_command("terminate", "terminated", "only an unfinished one can be terminated")
)


@cli.command()
@click.option(
    "--status",
    type=click.Choice(["complete", "terminated"], case_sensitive=False),
    required=True,
    help="Purge instances that ended in this status.",
)
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    callback=_duration_param,
    help="Only those that ended longer ago than this, e.g. 7d, 12h, 30m, 1h30m.",
)
@_url_option
@_json_option
def purge(status: str, older_than: timedelta, url: str | None, as_json: bool) -> None:
    """Delete finished instances (with their pointers, subscriptions and errors)."""
    store = _url(url)
    wanted = WorkflowStatus(status.lower())
    try:
        cutoff = datetime.now(UTC) - older_than
    except OverflowError:
        raise click.BadParameter(
            f"{older_than.days:,} days ago falls before the year 1: nothing ended that long "
            "ago; give a shorter duration",
            param_hint="'--older-than'",
        ) from None

    async def go() -> int:
        async with _client(store) as host:
            if Capability.PURGE not in host.persistence.capabilities:
                raise click.ClickException(
                    f"the store at {redact_url(store)} ({type(host.persistence).__name__}) "
                    "does not support purging (it does not declare the PURGE capability)"
                )
            return await host.persistence.purge_workflows(wanted, cutoff)

    count = _run(go())
    if as_json:
        _emit_json({"purged": count, "status": wanted.value, "older_than": _iso(cutoff)})
    else:
        click.echo(
            f"purged {count} {wanted.value} workflow{'s' if count != 1 else ''} that "
            f"ended before {_when(cutoff)}"
        )


@cli.command()
@_url_option
@click.option(
    "--orders",
    type=click.IntRange(3, 50),
    default=5,
    show_default=True,
    help="How many orders to place (the last one is never paid).",
)
@click.option(
    "--payment-window",
    type=_FiniteFloatRange(0.5, 60),
    default=4.0,
    show_default=True,
    help="Seconds an order waits for its payment.",
)
@_json_option
def demo(url: str | None, orders: int, payment_window: float, as_json: bool) -> None:
    """Run the event-driven order example end to end, with a worker restart.

    Orders wait for a payment event with a timeout; most are paid (some while no worker
    runs), one times out and is cancelled, and a second worker picks up where the
    first stopped. Uses the store of --url (default sqlite:///wfe.db).
    """
    from wfe_core.demo import run_demo, summary_table

    store = _url(url)
    try:
        url_scheme(store)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from exc
    console = Console(stderr=as_json, highlight=False)
    started = time.monotonic()

    async def go() -> Any:
        try:
            return await run_demo(
                store, orders=orders, payment_window=payment_window, console=console
            )
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from exc

    results = _run(go())
    elapsed = time.monotonic() - started
    if as_json:
        _emit_json(
            {
                "url": redact_url(store),
                "seconds": round(elapsed, 2),
                "orders": [o.to_json() for o in results],
            }
        )
        return
    console.print(summary_table(results))
    if url_scheme(store) == "memory":
        console.print(f"done in {elapsed:.1f}s (memory:// keeps nothing once the demo ends)")
    else:
        where = "" if store == DEFAULT_URL else f" --url {redact_url(store)}"
        console.print(f"done in {elapsed:.1f}s; look around: wfe list{where}, then wfe show <id>")


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``wfe`` entry point."""
    cli.main(args=argv, prog_name="wfe")
    raise SystemExit(0)  # pragma: no cover - cli.main always exits


if __name__ == "__main__":  # pragma: no cover
    main()
