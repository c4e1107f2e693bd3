"""The application's registry of the step and data types a definition document may
name: :class:`DefinitionRegistry`.

A document never imports anything: ``StepType`` and ``DataType`` are looked up here
only, by the exact names the application registered (and their aliases). The built-in
primitives are registered already, by their short names (``If``, ``WaitFor``...) and by
Workflow Core's full names (``WorkflowCore.Primitives.If, WorkflowCore``), so Workflow
Core documents load unchanged once their own step and data types are mapped::

    registry = DefinitionRegistry()
    registry.step("Counter", Counter,
                  aliases=["WorkflowCore.TestAssets.Steps.Counter, WorkflowCore.TestAssets"])
    registry.data("CounterBoard", CounterBoard)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from wfe_core import primitives as prim
from wfe_core.definitions.bodies import Decide
from wfe_core.errors import DefinitionError
from wfe_core.steps import StepBody, make_body

__all__ = ["BUILTIN_STEPS", "DefinitionRegistry", "StepType"]


@dataclass(frozen=True)
class StepType:
    """What a ``StepType`` name resolves to.

    ``target`` is a :class:`~wfe_core.StepBody` subclass or a function(context);
    ``container`` steps take ``Do`` branches; ``inputs`` maps a document's input names
    (Workflow Core's, e.g. ``Collection``) to the body's attributes; ``durations`` are
    the attributes given as a duration (a ``timedelta``, seconds, or ``"hh:mm:ss"``)."""

    name: str
    target: Any
    container: bool = False
    builtin: bool = False
    inputs: Mapping[str, str] = field(default_factory=dict)
    durations: frozenset[str] = frozenset()


def _builtin(
    name: str,
    body: type[StepBody],
    *,
    container: bool = False,
    inputs: Mapping[str, str] | None = None,
    durations: Iterable[str] = (),
) -> StepType:
    return StepType(name, body, container, True, dict(inputs or {}), frozenset(durations))


_WAIT = {"EventName": "event_name", "EventKey": "event_key", "EffectiveDate": "effective_date"}

BUILTIN_STEPS: tuple[StepType, ...] = (
    _builtin("If", prim.If, container=True, inputs={"Condition": "condition"}),
    _builtin("While", prim.While, container=True, inputs={"Condition": "condition"}),
    _builtin(
        "Foreach",
        prim.Foreach,
        container=True,
        inputs={"Collection": "items", "RunParallel": "parallel"},
    ),
    _builtin("Sequence", prim.Sequence, container=True),
    _builtin("Saga", prim.Saga, container=True),
    _builtin("Decide", Decide, inputs={"Expression": "value"}),
    _builtin("Delay", prim.Delay, inputs={"Period": "period"}, durations=["period"]),
    _builtin(
        "Schedule",
        prim.Schedule,
        container=True,
        inputs={"Interval": "interval"},
        durations=["interval"],
    ),
    _builtin(
        "Recur",
        prim.Recur,
        container=True,
        inputs={"Interval": "interval", "StopCondition": "until"},
        durations=["interval"],
    ),
    _builtin(
        "WaitFor", prim.WaitFor, inputs={**_WAIT, "Timeout": "timeout"}, durations=["timeout"]
    ),
    _builtin(
        "Activity",
        prim.Activity,
        inputs={
            "ActivityName": "activity_name",
            "Parameters": "params",
            "EffectiveDate": "effective_date",
        },
    ),
    _builtin(
        "SubWorkflow",
        prim.SubWorkflow,
        inputs={"DefinitionId": "definition_id", "Version": "version", "Data": "child_data"},
    ),
    _builtin("EndWorkflow", prim.EndWorkflow),
)
"""The primitives every registry starts with (see :meth:`DefinitionRegistry.__init__`
for the names they answer to)."""

_EXTRA_NAMES = {"Foreach": ["ForEach"], "Sequence": ["Parallel"]}


class DefinitionRegistry:
    """The step and data types definition documents may name, filled by the
    application; the built-in primitives are there from the start.

    Built-ins answer to their short name (``If``, ``While``, ``Foreach`` / ``ForEach``,
    ``Sequence`` / ``Parallel``, ``Saga``, ``Decide``, ``Delay``, ``Schedule``, ``Recur``,
    ``WaitFor``, ``Activity``, ``SubWorkflow``, ``EndWorkflow``), to
    ``WorkflowCore.Primitives.<Name>`` and to ``WorkflowCore.Primitives.<Name>,
    WorkflowCore``. ``DataType: dict`` is registered too (dynamic data)."""

    def __init__(self) -> None:
        self._steps: dict[str, StepType] = {}
        self._data: dict[str, type[Any]] = {}
        for builtin in BUILTIN_STEPS:
            names = [builtin.name, *_EXTRA_NAMES.get(builtin.name, [])]
            for short in names:
                for name in (
                    short,
                    f"WorkflowCore.Primitives.{short}",
                    f"WorkflowCore.Primitives.{short}, WorkflowCore",
                ):
                    self._steps[name] = builtin
        self._data["dict"] = dict

    @staticmethod
    def _check_name(name: object, what: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(f"a {what} name must be a non-empty string, not {name!r}")
        return name

    def step(
        self,
        name: str,
        step: type[StepBody] | Callable[..., Any],
        *,
        aliases: Iterable[str] = (),
    ) -> Self:
        """Let documents name ``step`` (a ``StepBody`` subclass or a function(context))
        as ``StepType: <name>`` (or any of ``aliases``, e.g. a .NET type name). The same
        name for another step is an error; returns the registry (calls chain)."""
        make_body(step, f"registry.step({name!r})")  # a step, or DefinitionError
        entry = StepType(self._check_name(name, "step"), step)
        for each in (name, *aliases):
            self._check_name(each, "step")
            known = self._steps.get(each)
            if known is not None and known.target is not step:
                raise DefinitionError(
                    f"step name {each!r} is already registered for {known.target!r}; "
                    "pick another name"
                )
            self._steps[each] = entry
        return self

    def data(self, name: str, data_type: type[Any], *, aliases: Iterable[str] = ()) -> Self:
        """Let documents name ``data_type`` (a dataclass, pydantic model, plain class
        or ``dict``) as ``DataType: <name>`` (or any of ``aliases``). Returns the
        registry."""
        if not isinstance(data_type, type):
            raise DefinitionError(
                f"registry.data({name!r}) takes a class, not {type(data_type).__name__}"
            )
        for each in (name, *aliases):
            self._check_name(each, "data type")
            known = self._data.get(each)
            if known is not None and known is not data_type:
                raise DefinitionError(
                    f"data type name {each!r} is already registered for {known!r}; "
                    "pick another name"
                )
            self._data[each] = data_type
        return self

    def find_step(self, name: str) -> StepType | None:
        """What a ``StepType`` name resolves to, or None."""
        return self._steps.get(name)

    def find_data(self, name: str) -> type[Any] | None:
        """What a ``DataType`` name resolves to, or None."""
        return self._data.get(name)

    def step_names(self) -> list[str]:
        """Every registered step name (built-ins included), sorted."""
        return sorted(self._steps)

    def data_names(self) -> list[str]:
        """Every registered data type name, sorted."""
        return sorted(self._data)

    def data_types(self) -> list[type[Any]]:
        """The registered data types (each once)."""
        return list(dict.fromkeys(self._data.values()))
