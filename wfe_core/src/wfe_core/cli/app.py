"""``--app`` for the command line: :mod:`wfe_core.app_loading` with its errors as
command-line errors (a spec that names nothing usable is a bad ``--app`` value, exit
status 2; an application whose registration fails is exit status 1)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

import click

from wfe_core import app_loading
from wfe_core.app_loading import AppLoadError, AppRegistrationError, Register
from wfe_core.client import WorkflowClient
from wfe_core.definition import WorkflowDefinition

__all__ = ["apply_app", "load_app"]


def _bad_app(exc: AppLoadError) -> click.BadParameter:
    return click.BadParameter(str(exc), param_hint="--app")


async def apply_app(host: WorkflowClient, spec: str) -> list[WorkflowDefinition]:
    """Register on ``host`` what ``--app spec`` names (see
    :mod:`wfe_core.app_loading` for the forms it may take); return the definitions
    registered. Raises ``click.BadParameter`` / ``click.ClickException``."""
    try:
        return await app_loading.apply_app(host, spec)
    except AppLoadError as exc:
        raise _bad_app(exc) from exc
    except AppRegistrationError as exc:
        raise click.ClickException(f"--app {exc}") from exc


def load_app(target: Any, spec: str = "--app") -> Register:
    """Turn an ``--app`` target into ``apply(host)`` that registers it on a host.

    Raises ``click.BadParameter`` when ``target`` is none of the accepted forms.
    """
    try:
        register = app_loading.load_app(target, spec)
    except AppLoadError as exc:
        raise _bad_app(exc) from exc

    def apply(host: WorkflowClient) -> Awaitable[None] | None:
        # sync where the app's registration is (a list of workflows, register(host)),
        # a coroutine where it is not (a factory, an async register(host))
        try:
            result = register(host)
        except AppLoadError as exc:
            raise _bad_app(exc) from exc
        if not inspect.isawaitable(result):
            return None
        pending = result

        async def finish() -> None:
            try:
                await pending
            except AppLoadError as exc:
                raise _bad_app(exc) from exc

        return finish()

    return apply
