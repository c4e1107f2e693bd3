"""What every ``wfe`` command shares: the store URL, the service URLs, ``--app``,
``--json``, number and duration options, and running a command's coroutine with
wfe's errors turned into command-line errors."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from wfe_core.cli.config import config_namespace
from wfe_core.coercion import parse_duration
from wfe_core.errors import ProviderNotFound, WfeError, WorkflowNotFound

__all__ = [
    "APP_HELP",
    "DATA_TYPES_HELP",
    "DEFAULT_URL",
    "MAX_INT64",
    "SERVICE_OPTIONS",
    "FiniteFloatRange",
    "Services",
    "Settings",
    "app_option",
    "duration_param",
    "json_option",
    "need_app",
    "run",
    "service_options",
    "store_namespace",
    "store_url",
    "url_option",
]

DEFAULT_URL = "sqlite:///wfe.db"
"""The store used when neither ``--url`` nor ``WFE_URL`` is given."""

APP_HELP = (
    "Your workflows, as module:attr (or WFE_APP): a Workflow, a Workflow class, a list of "
    "them, a function returning them, or a function register(host)."
)
"""``--app`` help of the commands that need the app (``worker``, ``start``)."""

DATA_TYPES_HELP = (
    "Register your workflows' data types (module:attr, or WFE_APP) to read their data."
)
"""``--app`` help of the commands that work without it (``show``, ``list``)."""

MAX_INT64 = 2**63 - 1
"""The largest integer every store keeps (64-bit)."""

T = TypeVar("T")


@dataclass
class Settings:
    """What the ``wfe`` group was given."""

    url: str
    namespace: str | None = None
    """``--namespace`` (None: the URL's ``?namespace=``, else ``WFE_NAMESPACE``, else
    ``default``, resolved by the store)."""
    config_namespace: str | None = None
    """``namespace`` of the project config (:mod:`wfe_core.cli.config`): used only when
    neither ``--namespace``, the URL's ``?namespace=`` nor ``WFE_NAMESPACE`` names one."""
    config_path: Path | None = None
    """The project config file in effect (None: none was found)."""


def namespace_option() -> str | None:
    """The group's ``--namespace``, or None when it was not given."""
    ctx = click.get_current_context(silent=True)
    settings = ctx.find_object(Settings) if ctx is not None else None
    return settings.namespace if settings is not None else None


def store_namespace(url: str) -> str | None:
    """The namespace a command passes when it opens the store at ``url``:
    ``--namespace``, else the config's ``namespace`` when neither the URL's
    ``?namespace=`` nor ``WFE_NAMESPACE`` names one, else None (the store resolves it)."""
    ctx = click.get_current_context(silent=True)
    settings = ctx.find_object(Settings) if ctx is not None else None
    if settings is None:
        return None
    if settings.namespace is not None:
        return settings.namespace
    return config_namespace(settings.config_namespace, url)


def store_url(url: str | None) -> str:
    """The effective store URL: the command's ``--url``, else the group's (or WFE_URL)."""
    if url:
        return url
    ctx = click.get_current_context()
    settings = ctx.find_object(Settings)
    return settings.url if settings is not None else DEFAULT_URL


def run(coro: Coroutine[Any, Any, T]) -> T:
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
class Services:
    """Where a host takes its lock, queue and lifecycle publisher from, when not from
    the store (``--lock-url``, ``--queue-url``, ``--lifecycle-url``)."""

    lock_url: str | None = None
    queue_url: str | None = None
    lifecycle_url: str | None = None


SERVICE_OPTIONS = (
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
"""The service options: flag, :class:`Services` field, variable, role, help text."""


def service_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--lock-url``, ``--queue-url`` and ``--lifecycle-url`` (env ``WFE_LOCK_URL``,
    ``WFE_QUEUE_URL``, ``WFE_LIFECYCLE_URL``) to a command; it receives them as one
    ``services`` argument. Every command that writes through a host takes them, so that
    what it queues reaches workers that take their queue from another service."""
    for flag, name, env, _role, text in reversed(SERVICE_OPTIONS):
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
        services = Services(**{name: kwargs.pop(name) for _f, name, *_ in SERVICE_OPTIONS})
        return command(*args, services=services, **kwargs)

    return with_services


url_option = click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Store URL (default: the one given to wfe, else $WFE_URL, else sqlite:///wfe.db).",
)
"""A command's own ``--url`` (it wins over the group's)."""

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
)
"""``--json``: one JSON document on stdout instead of tables."""


def app_option(help_text: str = APP_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--app MODULE:ATTR`` (env ``WFE_APP``) with ``help_text``."""
    return click.option(
        "--app", envvar="WFE_APP", default=None, metavar="MODULE:ATTR", help=help_text
    )


def need_app(app: str | None, command: str) -> str:
    """``app``, or a usage error (exit status 2) saying ``wfe COMMAND`` needs it."""
    if not app:
        raise click.UsageError(
            f"wfe {command} needs your workflow definitions: pass --app module:attr (or set "
            "WFE_APP), the same one your workers use, e.g. --app wfe_core.demo:workflows"
        )
    return app


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan``, ``inf`` and ``-inf`` (a NaN
    passes every range check, and no setting means forever)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def duration_param(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """A click callback reading a duration option (``7d``, ``1h30m``)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
