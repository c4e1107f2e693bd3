"""Loading an application's workflows from a ``module:attr`` spec.

``wfe worker --app myapp.workflows:workflows`` (or ``WFE_APP``) names the workflows of
an application. :func:`apply_app` imports ``module`` (the current directory is on the
import path), follows ``attr`` (a dotted path inside the module) and registers what it
finds on a host. ``attr`` must be one of:

* a :class:`~wfe_core.Workflow` instance, or a ``Workflow`` subclass (instantiated with
  no arguments);
* a list, tuple or set of those;
* a function ``register(host)`` taking one argument: it is called with the host and
  registers what it wants (workflows, types, middleware, lifecycle handlers); it may be
  ``async``;
* a function taking no argument that returns any of the first two forms (it may be
  ``async``).

A spec that cannot be followed raises :class:`AppLoadError`; an application whose
registration fails raises :class:`AppRegistrationError`. Both carry a message meant
for the person who typed the spec.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from wfe_core.client import WorkflowClient
from wfe_core.errors import DefinitionError, WfeError
from wfe_core.steps import WorkflowDefinition
from wfe_core.workflow import Workflow

__all__ = [
    "AppLoadError",
    "AppRegistrationError",
    "apply_app",
    "import_target",
    "load_app",
]

Register = Callable[[WorkflowClient], Awaitable[None] | None]
"""What :func:`load_app` returns: registers the application on a host."""


class AppLoadError(WfeError, ValueError):
    """An app spec names nothing usable: not ``module:attr``, a module that does not
    import, a missing attribute, a value of none of the accepted forms, or an app that
    registers no workflow."""


class AppRegistrationError(WfeError):
    """Registering an application's workflows failed: an invalid definition, or its
    ``register(host)`` / factory raised."""


def import_target(spec: str) -> Any:
    """Import ``module`` of ``spec`` (``module:attr``, the current directory on the
    import path) and return ``attr`` (a dotted path inside it).

    Raises :class:`AppLoadError` naming what went wrong.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"{spec!r} is not module:attr, e.g. 'myapp.workflows:workflows'")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(
                f"cannot import {module_name!r}: no module named {exc.name!r} (the current "
                "directory and PYTHONPATH are searched)"
            ) from exc
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
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
                raise AppLoadError(
                    f"{spec}: item {i} is {type(item).__name__}, not a Workflow instance or "
                    "subclass"
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


def load_app(target: Any, spec: str = "--app") -> Register:
    """Turn an app target (what :func:`import_target` returned) into ``apply(host)``
    that registers it on a host; ``spec`` names it in messages.

    Raises :class:`AppLoadError` when ``target`` is none of the accepted forms (a
    factory returning none of them raises it when ``apply`` runs).
    """
    direct = _as_workflows(target, spec)
    if direct is not None:

        def register_all(host: WorkflowClient) -> None:
            for wf in direct:
                host.register_workflow(wf)

        return register_all
    if callable(target):
        arity = _required_positional(target)
        if arity == 1:
            return target  # type: ignore[no-any-return]
        if arity == 0:

            async def from_factory(host: WorkflowClient) -> None:
                produced = target()
                if inspect.isawaitable(produced):
                    produced = await produced
                found = _as_workflows(produced, spec)
                if found is None:
                    raise AppLoadError(
                        f"{spec}() returned {type(produced).__name__}; a factory must return a "
                        "Workflow or a list of Workflows"
                    )
                for wf in found:
                    host.register_workflow(wf)

            return from_factory
        raise AppLoadError(
            f"{spec} is a function of {arity} required arguments; expected register(host) "
            "or a factory taking none"
        )
    raise AppLoadError(
        f"{spec} is {type(target).__name__}; expected a Workflow, a Workflow class, a list of "
        "them, a function returning them, or a function register(host)"
    )


async def apply_app(host: WorkflowClient, spec: str) -> list[WorkflowDefinition]:
    """Register on ``host`` what ``spec`` (``module:attr``) names; return the
    definitions the host then has.

    Raises :class:`AppLoadError` for a spec that names nothing usable or registers no
    workflow, :class:`AppRegistrationError` when registering fails.
    """
    register = load_app(import_target(spec), spec)
    try:
        result = register(host)
        if inspect.isawaitable(result):
            await result
    except AppLoadError:
        raise
    except DefinitionError as exc:
        raise AppRegistrationError(f"{spec}: invalid workflow: {exc}") from exc
    except Exception as exc:
        raise AppRegistrationError(
            f"{spec}: registering the workflows failed: {type(exc).__name__}: {exc}"
        ) from exc
    definitions = host.registry.all()
    # an app may register no code workflow and run stored documents (definitions as
    # data): setting host.definition_registry is registering something
    if not definitions and host._definition_registry is None:
        raise AppLoadError(f"{spec} registered no workflows")
    return definitions
