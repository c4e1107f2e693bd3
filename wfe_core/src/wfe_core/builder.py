"""The fluent builder that turns a :class:`~wfe_core.definition.Workflow` into steps.

Each call returns the builder of the step it adds, so chains read top to bottom::

    builder.start_with(Reserve).then(charge).name("charge").wait_for(
        "payment", key=lambda d: d.order_id, timeout=timedelta(hours=1)
    ).output(paid=lambda s: s.event_data)

A *branch* is a callable taking a builder (``lambda b: b.start_with(X).then(Y)``);
``.do(branch)`` returns the container's builder, so ``.then(...)`` continues after
the block.

Typing
------
The builders are generic in the workflow's data type ``TData`` (and a step's builder
also in its step body type ``TStep``), so with ``build(self, builder:
WorkflowBuilder[Order])`` a type checker checks every function of the chain: data
functions (``key=``, ``if_``, ``while_``, ``foreach``, ``decide``, ``recur(until=)``,
``input``...) are ``Callable[[Order], ...]``, output functions take the step body
(``.wait_for(...).output(paid=lambda s: s.event_data)`` sees a ``WaitFor``), function
steps take a ``StepContext[Order]``, and branches take a ``WorkflowBuilder[Order]``.
Every method returns a builder of the same ``TData``. Types only: at run time the
builder behaves as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Generic, Self, overload

from typing_extensions import TypeVar

from wfe_core import primitives as prim
from wfe_core import user_tasks as ut
from wfe_core.errors import DefinitionError
from wfe_core.retry import RetryPolicy
from wfe_core.steps import (
    ErrorBehavior,
    FunctionStep,
    Outcome,
    StepBody,
    StepContext,
    WorkflowDefinition,
    WorkflowStep,
    _call_style,
    const_or_fn,
    duration_fn,
    make_body,
)

__all__ = [
    "DecideBuilder",
    "ParallelBuilder",
    "StepBuilder",
    "UserTaskBuilder",
    "WhenBuilder",
    "WorkflowBuilder",
]

TData = TypeVar("TData")
TStep = TypeVar("TStep", bound=StepBody, covariant=True, default=StepBody)
"""The step body class of a :class:`StepBuilder` (what ``output`` functions receive)."""
TNewStep = TypeVar("TNewStep", bound=StepBody)
TChain = TypeVar("TChain", bound="_Chain[Any]", default=Any)

Branch = Callable[["WorkflowBuilder[Any]"], Any]
"""An untyped branch (kept for old annotations); the methods take ``BranchFn[TData]``."""
DataFn = Callable[..., Any]
"""An untyped data function, as the builder stores it."""

BranchFn = Callable[["WorkflowBuilder[TData]"], object]
"""A branch: a function taking the builder of the branch (``lambda b: b.start_with(X)``)."""
StepFn = Callable[[StepContext[TData]], object]
"""A function step: ``fn(context)``, sync or async."""


class _Chain(Generic[TData]):
    """Operations that add a step after the current position (or as the first step)."""

    _wb: WorkflowBuilder[Any]

    def _link(self, step: WorkflowStep) -> None:
        raise NotImplementedError

    def _add(
        self,
        factory: Callable[[], StepBody],
        name: str,
        *,
        thread: bool = False,
        container: bool = False,
    ) -> WorkflowStep:
        step = self._wb._new_step(factory, name, thread=thread, container=container)
        self._link(step)
        return step

    @overload
    def then(  # type: ignore[overload-overlap]  # a class wins
        self, step: type[TNewStep]
    ) -> StepBuilder[TData, TNewStep]: ...
    @overload
    def then(self, step: StepFn[TData]) -> StepBuilder[TData, FunctionStep]: ...
    def then(self, step: Any) -> StepBuilder[TData, Any]:
        """Add ``step`` (a StepBody subclass or a function(context)) after this one."""
        factory, name, thread = make_body(step, f"then() after {self._where()}")
        return StepBuilder(self._wb, self._add(factory, name, thread=thread))

    def _where(self) -> str:
        return "the start of the workflow"

    def wait_for(
        self,
        name: str,
        key: str | Callable[[TData], object] = "",
        effective_date: datetime | Callable[[TData], datetime | None] | None = None,
        timeout: timedelta | Callable[[TData], timedelta | None] | None = None,
    ) -> StepBuilder[TData, prim.WaitFor]:
        """Wait for event ``name`` with ``key`` (a value or fn(data)); outputs
        ``event_data`` and ``timed_out``. With ``timeout`` the step proceeds with
        ``event_data = None`` and ``timed_out = True`` when no event came in time."""
        if not isinstance(name, str) or not name:
            raise DefinitionError(
                f"wait_for after {self._where()}: event name must be a non-empty string"
            )
        sb: StepBuilder[TData, prim.WaitFor] = StepBuilder(
            self._wb, self._add(prim.WaitFor, f"wait_for({name})")
        )
        sb._set_input("event_name", lambda _d: name)
        sb._set_input("event_key", const_or_fn(key))
        if effective_date is not None:
            sb._set_input("effective_date", const_or_fn(effective_date))
        if timeout is not None:
            sb._set_input("timeout", duration_fn(timeout, "wait_for timeout"))
        return sb

    def delay(
        self, period: timedelta | Callable[[TData], timedelta]
    ) -> StepBuilder[TData, prim.Delay]:
        """Sleep for ``period`` (a timedelta or fn(data) -> timedelta), then go on."""
        sb: StepBuilder[TData, prim.Delay] = StepBuilder(self._wb, self._add(prim.Delay, "delay"))
        sb._set_input("period", duration_fn(period, "delay"))
        return sb

    def if_(self, condition: Callable[[TData], object]) -> ContainerBuilder[TData, prim.If]:
        """Run a branch once when ``condition(data)`` is true: ``.if_(c).do(branch)``."""
        sb: ContainerBuilder[TData, prim.If] = ContainerBuilder(
            self._wb, self._add(prim.If, "if", container=True)
        )
        sb._set_input("condition", condition)
        return sb

    def while_(self, condition: Callable[[TData], object]) -> ContainerBuilder[TData, prim.While]:
        """Repeat a branch while ``condition(data)`` is true."""
        sb: ContainerBuilder[TData, prim.While] = ContainerBuilder(
            self._wb, self._add(prim.While, "while", container=True)
        )
        sb._set_input("condition", condition)
        return sb

    def foreach(
        self,
        items: Callable[[TData], Iterable[Any] | None],
        parallel: bool | Callable[[TData], bool] = True,
    ) -> ContainerBuilder[TData, prim.Foreach]:
        """Run a branch per item of ``items(data)`` (``context.item``), in parallel or
        one after another."""
        sb: ContainerBuilder[TData, prim.Foreach] = ContainerBuilder(
            self._wb, self._add(prim.Foreach, "foreach", container=True)
        )
        sb._set_input("items", items)
        sb._set_input("parallel", const_or_fn(parallel))
        return sb

    def parallel(self) -> ParallelBuilder[TData]:
        """Start parallel branches: ``.parallel().do(a).do(b).join()``."""
        return ParallelBuilder(self._wb, self._add(prim.Sequence, "parallel", container=True))

    def decide(self, value: Callable[[TData], object]) -> DecideBuilder[TData]:
        """Run the branches whose value equals ``value(data)``:
        ``.decide(fn).branch(v1, b1).branch(v2, b2)``."""
        sb: DecideBuilder[TData] = DecideBuilder(
            self._wb, self._add(prim.Decide, "decide", container=True)
        )
        sb._set_input("value", value)
        return sb

    def saga(self, branch: BranchFn[TData]) -> StepBuilder[TData, prim.Saga]:
        """A transaction scope: if a step inside fails, the completed steps inside are
        compensated in reverse order."""
        step = self._add(prim.Saga, "saga", container=True)
        step.is_saga = True
        sb: StepBuilder[TData, prim.Saga] = StepBuilder(self._wb, step)
        sb._add_branch(branch, None, "saga")
        return sb

    def schedule(
        self, interval: timedelta | Callable[[TData], timedelta]
    ) -> ScheduleBuilder[TData, Self]:
        """A side branch that runs once after ``interval``; the chain goes on at once."""
        return ScheduleBuilder(self, prim.Schedule, "schedule", interval, None)

    def recur(
        self,
        interval: timedelta | Callable[[TData], timedelta],
        until: Callable[[TData], object],
    ) -> ScheduleBuilder[TData, Self]:
        """A side branch run every ``interval`` until ``until(data)``; the chain goes on
        at once."""
        return ScheduleBuilder(self, prim.Recur, "recur", interval, until)

    def activity(
        self,
        name: str | Callable[[TData], str],
        params: Callable[[TData], object] | Any = None,
        effective_date: datetime | Callable[[TData], datetime | None] | None = None,
    ) -> StepBuilder[TData, prim.Activity]:
        """Wait for an activity worker to run activity ``name`` with ``params`` (a value
        or fn(data)); outputs ``result``."""
        sb: StepBuilder[TData, prim.Activity] = StepBuilder(
            self._wb, self._add(prim.Activity, f"activity({name})")
        )
        sb._set_input("activity_name", const_or_fn(name))
        if params is not None:
            sb._set_input("params", const_or_fn(params))
        if effective_date is not None:
            sb._set_input("effective_date", const_or_fn(effective_date))
        return sb

    def sub_workflow(
        self,
        definition_id: str,
        version: int | None = None,
        data: Callable[[TData], object] | Any = None,
    ) -> StepBuilder[TData, prim.SubWorkflow]:
        """Start child workflow ``definition_id`` with ``data`` (a value or fn(data)) and
        wait for it; outputs ``result`` (the child's final data). A child that does not
        complete fails this step."""
        sb: StepBuilder[TData, prim.SubWorkflow] = StepBuilder(
            self._wb, self._add(prim.SubWorkflow, f"sub_workflow({definition_id})")
        )
        sb._set_input("definition_id", lambda _d: definition_id)
        sb._set_input("version", lambda _d: version)
        if data is not None:
            sb._set_input("child_data", const_or_fn(data))
        return sb

    def user_task(
        self,
        prompt: str | Callable[[TData], str],
        assign_to: str | Callable[[TData], str | None] | None = None,
        *,
        group: str | Callable[[TData], str | None] | None = None,
    ) -> UserTaskBuilder[TData]:
        """Wait for a person: open a task with ``prompt`` assigned to ``assign_to``
        (a user) and/or ``group`` (values or fn(data)); chain ``.with_option(value,
        label).do(branch)`` and ``.with_escalation(...)`` (see :mod:`wfe_core.user_tasks`)."""
        if assign_to is None and group is None:
            raise DefinitionError(f"user_task after {self._where()}: give assign_to= or group=")
        spec, factory = ut.new_user_task_spec()
        sb: UserTaskBuilder[TData] = UserTaskBuilder(
            self._wb, self._add(factory, "user_task"), spec
        )
        sb._set_input("prompt", ut.prompt_fn(prompt))
        sb._set_input("assign_to", ut.assignment_fn(assign_to, "assign_to"))
        sb._set_input("group", ut.assignment_fn(group, "group"))
        return sb

    def end_workflow(self) -> StepBuilder[TData, prim.EndWorkflow]:
        """End the workflow here (it completes; open branches are cancelled)."""
        return StepBuilder(self._wb, self._add(prim.EndWorkflow, "end_workflow"))


class WorkflowBuilder(_Chain[TData]):
    """Builds the steps of one workflow (or of one branch of it)."""

    def __init__(self, steps: list[WorkflowStep] | None = None) -> None:
        self._wb = self
        self._steps: list[WorkflowStep] = [] if steps is None else steps
        self.first_step: int | None = None
        self._retry_policy: RetryPolicy | None = None

    def default_retry_policy(self, policy: RetryPolicy) -> Self:
        """The retry policy of every step that sets no retry settings of its own
        (the same as ``retry_policy = ...`` on the ``Workflow`` class)."""
        if not isinstance(policy, RetryPolicy):
            raise DefinitionError(f"default_retry_policy takes a RetryPolicy, not {policy!r}")
        self._retry_policy = policy
        return self

    def _new_step(
        self, factory: Callable[[], StepBody], name: str, *, thread: bool, container: bool
    ) -> WorkflowStep:
        step = WorkflowStep(
            id=len(self._steps),
            body=factory,
            body_name=name,
            run_in_thread=thread,
            is_container=container,
        )
        self._steps.append(step)
        return step

    def _link(self, step: WorkflowStep) -> None:
        if self.first_step is not None:
            raise DefinitionError(
                f"{step.display_name}: this builder already has a first step; chain further "
                "steps on the builder returned by start_with()/then()"
            )
        self.first_step = step.id

    @overload
    def start_with(  # type: ignore[overload-overlap]  # a class wins
        self, step: type[TNewStep]
    ) -> StepBuilder[TData, TNewStep]: ...
    @overload
    def start_with(self, step: StepFn[TData]) -> StepBuilder[TData, FunctionStep]: ...
    def start_with(self, step: Any) -> StepBuilder[TData, Any]:
        """Add the first step (a StepBody subclass or a function(context))."""
        factory, name, thread = make_body(step, "start_with()")
        return StepBuilder(self, self._add(factory, name, thread=thread))

    def _branch(self) -> WorkflowBuilder[Any]:
        return WorkflowBuilder(self._steps)

    def build(
        self,
        id: str,
        version: int,
        data_type: type[Any] | None,
        description: str | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> WorkflowDefinition:
        """Resolve attachments, validate and return the definition (``retry_policy``:
        the definition's default, unless the builder set one)."""
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise DefinitionError(f"workflow {id!r}: retry_policy must be a RetryPolicy")
        steps = self._steps
        if not steps:
            raise DefinitionError(f"workflow {id!r} version {version} has no steps")
        if self.first_step != 0:
            raise DefinitionError(
                f"workflow {id!r}: the first step must be added with start_with()"
            )
        by_external: dict[str, WorkflowStep] = {}
        for s in steps:
            if s.external_id is not None:
                if s.external_id in by_external:
                    raise DefinitionError(
                        f"{s.display_name}: id {s.external_id!r} is already used by "
                        f"{by_external[s.external_id].display_name}"
                    )
                by_external[s.external_id] = s
        for s in steps:
            for ext in s.pending_attach:
                target = by_external.get(ext)
                if target is None:
                    raise DefinitionError(
                        f"{s.display_name}: attach({ext!r}) names no step; give the target "
                        f"step .id({ext!r})"
                    )
                s.outcomes.append(Outcome(target.id))
            s.pending_attach = []
            if s.is_container and not s.children and s.body is not prim.Foreach:
                raise DefinitionError(
                    f"{s.display_name}: the block is empty; add its steps with .do(branch)"
                )
            if s.is_container and not s.children:
                raise DefinitionError(f"{s.display_name}: the block is empty; add .do(branch)")
        policy = self._retry_policy or retry_policy
        return WorkflowDefinition(id, version, data_type, steps, description, policy)


class StepBuilder(_Chain[TData], Generic[TData, TStep]):
    """The builder of one step: configure it, or chain the next step.

    ``TStep`` is the step body class (``WaitFor`` after ``wait_for``, your class after
    ``then(YourStep)``, ``FunctionStep`` after ``then(function)``): ``output``
    functions receive an instance of it."""

    def __init__(self, wb: WorkflowBuilder[Any], step: WorkflowStep) -> None:
        self._wb = wb
        self.step = step

    def _where(self) -> str:
        return self.step.display_name

    def _link(self, step: WorkflowStep) -> None:
        self.step.outcomes.append(Outcome(step.id))
        # steps that follow a compensation belong to it too
        step.is_compensation = self.step.is_compensation

    def _set_input(self, attr: str, fn: DataFn) -> None:
        self.step.inputs = [i for i in self.step.inputs if i[0] != attr]
        self.step.inputs.append((attr, fn, _call_style(fn, 2)))

    def _branch_first_step(self, branch: BranchFn[Any], what: str) -> int:
        """Build ``branch`` (a function taking a builder) and return its first step's id."""
        if not callable(branch):
            raise DefinitionError(
                f"{self.step.display_name}: {what} takes a branch: a function taking a builder"
            )
        sub = self._wb._branch()
        branch(sub)
        if sub.first_step is None:
            raise DefinitionError(f"{self.step.display_name}: a {what} branch adds no steps")
        return int(sub.first_step)

    def _add_branch(self, branch: BranchFn[Any], value: Any, what: str) -> None:
        self.step.children.append(self._branch_first_step(branch, what))
        self.step.child_values.append(value)

    def name(self, name: str) -> StepBuilder[TData, TStep]:
        """Give the step a display name."""
        self.step.name = name
        return self

    def id(self, external_id: str) -> StepBuilder[TData, TStep]:
        """Give the step an id that ``attach`` can jump to."""
        self.step.external_id = external_id
        return self

    def attach(self, external_id: str) -> StepBuilder[TData, TStep]:
        """Continue at the step with this id (a jump; makes loops)."""
        self.step.pending_attach.append(external_id)
        return self

    @overload
    def input(self, **mappings: Callable[[TData], object]) -> StepBuilder[TData, TStep]: ...
    @overload
    def input(
        self, **mappings: Callable[[TData, StepContext[TData]], object]
    ) -> StepBuilder[TData, TStep]: ...
    def input(self, **mappings: DataFn) -> StepBuilder[TData, TStep]:
        """Set step attributes before each run: ``attr=fn(data)`` or
        ``attr=fn(data, context)`` (type checkers want one kind per call: chain two
        ``.input(...)`` calls to mix them)."""
        for attr, fn in mappings.items():
            if not callable(fn):
                raise DefinitionError(
                    f"{self.step.display_name}: input {attr!r} must be a function of the data"
                )
            self._set_input(attr, fn)
        return self

    def output(
        self,
        *actions: Callable[[TStep, TData], object],
        **mappings: Callable[[TStep], object],
    ) -> StepBuilder[TData, TStep]:
        """When the step proceeds, call each ``action(step, data)`` (it sees both), then
        set ``data.<attr> = fn(step)`` (``data[attr]`` for dict data) per keyword."""
        for action in actions:
            if not callable(action):
                raise DefinitionError(
                    f"{self.step.display_name}: an output action must be a "
                    "function of the step and the data"
                )
            self.step.outputs.append((None, action))
        for attr, fn in mappings.items():
            if not callable(fn):
                raise DefinitionError(
                    f"{self.step.display_name}: output {attr!r} must be a function of the step"
                )
            self.step.outputs.append((attr, fn))
        return self

    def on_error(
        self,
        behavior: ErrorBehavior,
        retry_interval: timedelta | None = None,
        max_retries: int | None = None,
        backoff: float = 1.0,
        *,
        policy: RetryPolicy | None = None,
    ) -> StepBuilder[TData, TStep]:
        """Choose what happens when this step (or block) fails; with RETRY either the
        ``retry_interval`` / ``max_retries`` / ``backoff`` shorthand (no jitter) or a
        full :class:`~wfe_core.retry.RetryPolicy` as ``policy``."""
        if policy is not None and (retry_interval, max_retries, backoff) != (None, None, 1.0):
            raise DefinitionError(
                f"{self.step.display_name}: give either policy= or retry_interval / "
                "max_retries / backoff, not both"
            )
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise DefinitionError(f"{self.step.display_name}: policy must be a RetryPolicy")
        if not isinstance(behavior, ErrorBehavior):
            raise DefinitionError(f"{self.step.display_name}: on_error takes an ErrorBehavior")
        if max_retries is not None and max_retries < 0:
            raise DefinitionError(f"{self.step.display_name}: max_retries must be >= 0")
        if backoff < 1.0:
            raise DefinitionError(f"{self.step.display_name}: backoff must be >= 1.0")
        if retry_interval is not None and not isinstance(retry_interval, timedelta):
            raise DefinitionError(f"{self.step.display_name}: retry_interval must be a timedelta")
        self.step.error_behavior = behavior
        self.step.retry_interval = retry_interval
        self.step.max_retries = max_retries
        self.step.backoff = backoff
        self.step.retry_policy = policy
        return self

    def retry_policy(self, policy: RetryPolicy) -> StepBuilder[TData, TStep]:
        """Retry this step as ``policy`` says (``on_error(ErrorBehavior.RETRY,
        policy=policy)``)."""
        return self.on_error(ErrorBehavior.RETRY, policy=policy)

    def timeout(self, limit: timedelta) -> StepBuilder[TData, TStep]:
        """Limit one run of this step's body to ``limit``: past it ``context.cancelled``
        fires, an async body is cancelled, and the step fails with ``StepTimeout``
        (handled by its error policy). A sync body runs in a thread that cannot be
        stopped: it runs on, and its late result is discarded. Waiting for an event is
        not running: limit a wait with ``wait_for(timeout=...)``."""
        if not isinstance(limit, timedelta) or limit <= timedelta(0):
            raise DefinitionError(
                f"{self.step.display_name}: timeout must be a positive timedelta, not {limit!r}"
            )
        self.step.timeout = limit
        return self

    def compensate_with(self, step: type[StepBody] | StepFn[TData]) -> StepBuilder[TData, TStep]:
        """Run ``step`` to undo this one when it (or its saga) fails."""
        factory, name, thread = make_body(step, f"compensate_with() of {self._where()}")
        comp = self._wb._new_step(factory, name, thread=thread, container=False)
        comp.is_compensation = True
        self.step.compensation_step_id = comp.id
        return self

    def compensate_with_sequence(self, branch: BranchFn[TData]) -> StepBuilder[TData, TStep]:
        """Run a sequence of steps to undo this one."""
        comp = self._wb._new_step(prim.Compensation, "compensation", thread=False, container=True)
        comp.is_compensation = True
        StepBuilder(self._wb, comp)._add_branch(branch, None, "compensate_with_sequence")
        self.step.compensation_step_id = comp.id
        return self

    def cancel_condition(
        self, condition: Callable[[TData], bool], proceed_after_cancel: bool = False
    ) -> StepBuilder[TData, TStep]:
        """Cancel this step (and its branches) as soon as ``condition(data)`` is true."""
        self.step.cancel_condition = condition
        self.step.proceed_after_cancel = proceed_after_cancel
        return self

    def when(self, value: Any, label: str | None = None) -> WhenBuilder[TData]:
        """Branch on this step's outcome: ``.when(v).do(branch)``; chain more ``.when``."""
        switch: StepBuilder[TData, Any]
        if self.step.body is prim.OutcomeSwitch:
            switch = self
        else:
            switch = StepBuilder(self._wb, self._add(prim.OutcomeSwitch, "when", container=True))
        return WhenBuilder(switch, value, label)


class ContainerBuilder(StepBuilder[TData, TStep]):
    """The builder of a block step (if, while, foreach)."""

    def do(self, branch: BranchFn[TData]) -> StepBuilder[TData, TStep]:
        """Set the block's steps; returns the block's builder (``.then`` goes after it)."""
        if self.step.children:
            raise DefinitionError(f"{self.step.display_name}: do() was already called")
        self._add_branch(branch, None, "do")
        return self


class ParallelBuilder(StepBuilder[TData, prim.Sequence]):
    """The builder of ``parallel()``: add branches with ``do``, finish with ``join``."""

    def do(self, branch: BranchFn[TData]) -> ParallelBuilder[TData]:
        """Add one parallel branch."""
        self._add_branch(branch, None, "parallel do")
        return self

    def join(self) -> StepBuilder[TData, prim.Sequence]:
        """End the parallel block; ``.then`` continues when every branch is done."""
        if not self.step.children:
            raise DefinitionError(f"{self.step.display_name}: parallel() needs at least one do()")
        return StepBuilder(self._wb, self.step)


class DecideBuilder(StepBuilder[TData, prim.Decide]):
    """The builder of ``decide()``: add ``branch(value, branch)`` cases."""

    def branch(self, value: Any, branch: BranchFn[TData]) -> DecideBuilder[TData]:
        """Run ``branch`` when the decided value equals ``value``."""
        self._add_branch(branch, value, "decide branch")
        return self


class WhenBuilder(Generic[TData]):
    """``.when(value)`` waiting for its ``.do(branch)``."""

    def __init__(self, switch: StepBuilder[TData, Any], value: Any, label: str | None) -> None:
        self._switch = switch
        self._value = value
        self._label = label

    def do(self, branch: BranchFn[TData]) -> StepBuilder[TData, prim.OutcomeSwitch]:
        """Run ``branch`` when the outcome matches; returns the switch's builder."""
        self._switch._add_branch(branch, self._value, f"when({self._value!r})")
        return self._switch


class ScheduleBuilder(Generic[TData, TChain]):
    """``schedule(...)`` / ``recur(...)`` waiting for its ``.do(branch)``; ``TChain`` is
    the builder ``do`` gives back (the one ``schedule``/``recur`` was called on)."""

    def __init__(
        self,
        chain: TChain,
        body: type[StepBody],
        name: str,
        interval: Any,
        until: DataFn | None,
    ) -> None:
        self._chain = chain
        self._body = body
        self._name = name
        self._interval = duration_fn(interval, name)
        self._until = until

    def do(self, branch: BranchFn[TData]) -> TChain:
        """Set the side branch; returns the builder of the step before ``schedule``."""
        step = self._chain._add(self._body, self._name, container=True)
        sb: StepBuilder[TData, Any] = StepBuilder(self._chain._wb, step)
        sb._set_input("interval", self._interval)
        if self._until is not None:
            sb._set_input("until", self._until)
            sb.step.cancel_condition = None
        sb._add_branch(branch, None, self._name)
        return self._chain


class UserTaskBuilder(
    ut.UserTaskChain[TData, WorkflowBuilder[TData]], StepBuilder[TData, ut.UserTask]
):
    """The builder of ``user_task``: ``.with_option(value, label).do(branch)``,
    ``.with_escalation(...)``, then chain on (``.then`` runs after the task)."""

    def __init__(self, wb: WorkflowBuilder[Any], step: WorkflowStep, spec: ut.UserTaskSpec) -> None:
        super().__init__(wb, step)
        self._spec = spec
