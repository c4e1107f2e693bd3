"""Step bodies and edges that only definitions loaded from data use.

- :class:`Decide` -- Workflow Core's ``Decide``: proceeds with its ``value`` (input
  ``Expression``) as the outcome; the steps to go on with are picked by the
  document's ``SelectNextStep``.
- :class:`SelectingBody` -- wraps the body of a step that has ``SelectNextStep``: when
  the step proceeds, each expression is evaluated with ``data`` and ``outcome`` and the
  ids whose expression is true are recorded as the pointer's outcome (a JSON object,
  ``{"wfe.select": [ids]}``), which :class:`SelectOutcome` edges match.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wfe_core.steps import ExecutionResult, Outcome, StepBody, StepContext

__all__ = ["SELECTED_KEY", "Decide", "SelectOutcome", "SelectingBody"]

SELECTED_KEY = "wfe.select"
"""The key of the outcome object a :class:`SelectingBody` records."""


class Decide(StepBody):
    """Proceed with ``value`` as the outcome (Workflow Core's ``Decide``)."""

    value: Any = None

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        """Proceed, recording ``value``."""
        return ExecutionResult.outcome(self.value)


@dataclass(slots=True)
class SelectOutcome(Outcome):
    """An edge of ``SelectNextStep``: taken when its step id was selected."""

    select_id: str = ""

    def matches(self, outcome_value: Any) -> bool:
        """True when the recorded selection names this edge's step id."""
        if not isinstance(outcome_value, dict):
            return False
        selected = outcome_value.get(SELECTED_KEY)
        return isinstance(selected, list) and self.select_id in selected


Selector = Callable[[Any, Any], bool]
"""``selector(data, outcome) -> bool`` for one ``SelectNextStep`` entry."""


class SelectingBody(StepBody):
    """Runs the step's own body, then records which ``SelectNextStep`` ids to go on
    with. Inputs set on it and attributes read from it are the wrapped body's."""

    def __init__(
        self, inner: StepBody, selectors: Sequence[tuple[str, Selector]], in_thread: bool
    ) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_selectors", tuple(selectors))
        object.__setattr__(self, "_in_thread", in_thread)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_inner"), name, value)

    @property
    def wrapped(self) -> StepBody:
        """The step's own body."""
        inner: StepBody = object.__getattribute__(self, "_inner")
        return inner

    async def run(self, context: StepContext[Any]) -> ExecutionResult | None:
        """Run the wrapped body; when it proceeds, record the selected step ids."""
        inner = self.wrapped
        result: Any
        if object.__getattribute__(self, "_in_thread"):
            result = await asyncio.to_thread(inner.run, context)
        else:
            result = inner.run(context)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            result = ExecutionResult.next()
        if not isinstance(result, ExecutionResult) or not result.proceed or result.end:
            return result  # type: ignore[no-any-return]
        outcome = result.outcome_value
        selected = [
            step_id
            for step_id, selector in object.__getattribute__(self, "_selectors")
            if selector(context.data, outcome)
        ]
        result.outcome_value = {SELECTED_KEY: selected}
        return result
