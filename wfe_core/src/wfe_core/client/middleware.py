"""Running workflow middleware (see
:meth:`wfe_core.client.WorkflowClient.use_workflow_middleware`): plain ``mw(instance)``
and wrapping ``async mw(instance, next)`` ones, in the order registered.

A wrapping middleware that does not call ``next`` (or fails before it) does not stop the
rest: the engine runs it after the middleware returns. In PRE_WORKFLOW an error stops
the start (nothing is stored); in the other phases it is logged and the rest run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from wfe_core.models import WorkflowInstance
from wfe_core.options import MiddlewarePhase, WorkflowMiddleware

__all__ = ["run_middleware", "takes_next", "wrap_pass"]

log = logging.getLogger("wfe.host")

Chain = Sequence[tuple[WorkflowMiddleware, bool]]
"""Middleware and whether each wraps (takes ``next``), in order."""


def takes_next(middleware: Callable[..., Any]) -> bool:
    """Whether a workflow middleware takes ``(instance, next)`` (two required positional
    parameters) rather than ``(instance)``."""
    try:
        parameters = inspect.signature(middleware).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.default is inspect.Parameter.empty
    ]
    return len(positional) == 2


def _failed(phase: MiddlewarePhase, instance: WorkflowInstance) -> None:
    log.exception(
        "%s middleware failed for workflow %s",
        phase.value,
        instance.id,
        extra={"workflow_id": instance.id, "definition": instance.workflow_definition_id},
    )


async def run_middleware(chain: Chain, phase: MiddlewarePhase, instance: WorkflowInstance) -> None:
    """Run ``phase``'s middleware on ``instance``; in EXECUTE_WORKFLOW only the plain
    ones (the wrapping ones run around the pass: :func:`wrap_pass`)."""
    if phase is MiddlewarePhase.EXECUTE_WORKFLOW:
        chain = [(mw, False) for mw, wraps in chain if not wraps]

    async def run(index: int) -> None:
        if index == len(chain):
            return
        mw, wraps = chain[index]
        called = False

        async def next_() -> None:
            nonlocal called
            if not called:
                called = True
                await run(index + 1)

        try:
            if wraps:
                await mw(instance, next_)  # type: ignore[call-arg,misc]
            else:
                result = mw(instance)  # type: ignore[call-arg]
                if inspect.isawaitable(result):
                    await result
        except Exception:
            if phase is MiddlewarePhase.PRE_WORKFLOW:
                raise
            _failed(phase, instance)
        await next_()  # a plain middleware, or a wrapping one that did not call next

    await run(0)


async def wrap_pass(
    chain: Chain, instance: WorkflowInstance, run_pass: Callable[[], Awaitable[None]]
) -> None:
    """Run ``run_pass`` inside the wrapping middleware of ``chain`` (the first is the
    outermost): exactly once, even when a middleware fails or does not call ``next``.
    The pass's error comes out of ``next()`` in each middleware it passes (one that
    catches it hides it from those outside) and is raised here even so; a middleware's
    own error is logged."""
    wrapping = [mw for mw, wraps in chain if wraps]
    if not wrapping:
        await run_pass()
        return
    failure: list[BaseException] = []

    async def run(index: int) -> None:
        if index == len(wrapping):
            try:
                await run_pass()
            except BaseException as exc:
                failure.append(exc)
                raise
            return
        called = False

        async def next_() -> None:
            nonlocal called
            if not called:
                called = True
                await run(index + 1)

        try:
            await wrapping[index](instance, next_)  # type: ignore[call-arg,misc]
        except Exception as exc:
            if failure and exc is failure[0]:
                raise  # the pass's own error, on its way out
            _failed(MiddlewarePhase.EXECUTE_WORKFLOW, instance)
        if not called:
            await next_()

    try:
        await run(0)
    except BaseException as exc:
        if not failure or exc is not failure[0]:
            raise
    if failure:
        raise failure[0]
