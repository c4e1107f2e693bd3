"""Wrapping workflow middleware (``mw(instance, next)``) around a pass: run exactly
once, the pass's error coming out of ``next()`` and raised even when a middleware
swallows it; a middleware's own error is logged, never lost or mistaken for the pass's."""

from __future__ import annotations

from typing import Any

import pytest
from wfe_core.client.middleware import run_middleware, takes_next, wrap_pass
from wfe_core.models import WorkflowInstance
from wfe_core.options import MiddlewarePhase

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _instance() -> WorkflowInstance:
    return WorkflowInstance(workflow_definition_id="mw", id="w-1")


def test_takes_next_tells_the_two_forms_apart() -> None:
    async def wrapping(instance: Any, call_next: Any) -> None: ...
    def plain(instance: Any) -> None: ...
    def with_default(instance: Any, extra: int = 1) -> None: ...

    assert takes_next(wrapping)
    assert not takes_next(plain)
    assert not takes_next(with_default)


async def test_the_pass_error_goes_out_through_every_middleware() -> None:
    seen: list[str] = []

    async def outer(instance: Any, call_next: Any) -> None:
        try:
            await call_next()
        except KeyError:
            seen.append("outer saw it")
            raise

    async def swallowing(instance: Any, call_next: Any) -> None:
        try:
            await call_next()
        except KeyError:
            seen.append("inner swallowed it")

    runs: list[int] = []

    async def failing_pass() -> None:
        runs.append(1)
        raise KeyError("the pass failed")

    chain = [(outer, True), (swallowing, True)]
    with pytest.raises(KeyError, match="the pass failed"):
        await wrap_pass(chain, _instance(), failing_pass)
    assert runs == [1]
    assert seen == ["inner swallowed it"]  # swallowed inside: the outer one saw success
    # the engine still got the pass's error: nothing pretends the pass succeeded


async def test_a_middleware_error_is_logged_and_the_pass_runs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    async def before_next(instance: Any, call_next: Any) -> None:
        raise RuntimeError("broken before next")

    async def after_next(instance: Any, call_next: Any) -> None:
        await call_next()
        await call_next()  # a second call does nothing
        raise RuntimeError("broken after next")

    async def ok_pass() -> None:
        runs.append(1)

    await wrap_pass([(before_next, True), (after_next, True)], _instance(), ok_pass)
    assert runs == [1]
    failures = [r for r in caplog.records if "middleware failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(getattr(r, "workflow_id", None) == "w-1" for r in failures)


async def test_pre_workflow_errors_stop_the_start_and_plain_ones_run_in_order() -> None:
    order: list[str] = []

    async def wrapping(instance: Any, call_next: Any) -> None:
        order.append("wrap:before")
        await call_next()
        order.append("wrap:after")

    def plain(instance: Any) -> None:
        order.append("plain")

    def refusing(instance: Any) -> None:
        raise ValueError("not allowed")

    await run_middleware(
        [(wrapping, True), (plain, False)], MiddlewarePhase.PRE_WORKFLOW, _instance()
    )
    assert order == ["wrap:before", "plain", "wrap:after"]
    with pytest.raises(ValueError, match="not allowed"):
        await run_middleware([(refusing, False)], MiddlewarePhase.PRE_WORKFLOW, _instance())
    # in other phases a failure is logged and the rest still run
    order.clear()
    await run_middleware(
        [(refusing, False), (plain, False)], MiddlewarePhase.POST_WORKFLOW, _instance()
    )
    assert order == ["plain"]
