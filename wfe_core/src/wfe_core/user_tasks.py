"""User tasks: a step that waits for a person.

``builder.user_task(prompt, assign_to=..., group=...)`` adds a :class:`UserTask` step.
When it runs it opens a *task* -- a prompt, the options the person may choose from and
who it is assigned to (a user, a group, or both) -- and waits. A client lists open
tasks (``client.get_open_user_tasks(...)``) and completes one with the chosen option
and optional data (``client.complete_user_task(...)``); the branch of that option
runs, then the chain goes on after the task::

    (
        builder.start_with(submit)
        .user_task("Approve the expense?", assign_to=lambda d: d.manager)
        .with_option("yes", "Approve").do(lambda b: b.start_with(pay))
        .with_option("no", "Reject").do(lambda b: b.start_with(notify_rejected))
        .with_escalation(after=timedelta(days=2), assign_to="finance-lead")
        .then(archive)
    )

How it is stored
----------------
The open task lives on the step's execution pointer, in
``pointer.extension_attributes[USER_TASK_ATTRIBUTE]`` (persisted with the instance, so
it survives restarts and is visible to ``wfe show``), and the pointer waits for the
event :data:`USER_TASK_EVENT` keyed by the task id (``"<workflow id>.<pointer id>"``:
stable and unique -- a saga that retries runs a new pointer, so a new task). An
escalation is the same pointer waking at its due time: it reassigns the task (and runs
the escalation's ``action`` branch, if any) and keeps waiting on the same
subscription, so a completion published meanwhile is not lost.

Authorization
-------------
wfe does not own identities: the application authenticates the person and tells wfe
who they are (``user=``) and which groups they are in (``groups=``). A task may be
completed by its assigned user, or by anyone who names its assigned group among their
groups; nobody else (:class:`UserTaskNotAssigned`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Self, TypeVar

from wfe_core.errors import DefinitionError, WfeError
from wfe_core.models import (
    ExecutionPointer,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.steps import ExecutionResult, StepBody, StepContext, WorkflowStep, duration_fn

__all__ = [
    "USER_TASK_ATTRIBUTE",
    "USER_TASK_EVENT",
    "EscalationSpec",
    "OpenUserTask",
    "UserTask",
    "UserTaskChain",
    "UserTaskError",
    "UserTaskInvalidOption",
    "UserTaskNotAssigned",
    "UserTaskNotFound",
    "UserTaskNotOpen",
    "UserTaskOption",
    "UserTaskSpec",
    "assignment_fn",
    "is_open",
    "new_user_task_spec",
    "open_user_tasks",
    "parse_task_id",
    "prompt_fn",
    "task_id_of",
    "task_record",
    "to_open_task",
]

USER_TASK_EVENT = "wfe.user_task"
"""Event name of user task completions (the key is the task id)."""

USER_TASK_ATTRIBUTE = "wfe.user_task"
"""Extension attribute of a user task's pointer holding the task (a plain dict)."""

TData = TypeVar("TData")
TBranch = TypeVar("TBranch")


# ----------------------------------------------------------------------------- errors
class UserTaskError(WfeError):
    """Base of the user task errors; ``task_id`` names the task."""

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class UserTaskNotFound(UserTaskError, LookupError):
    """No user task has this id (malformed id, unknown workflow or pointer, or a
    pointer that is not a user task)."""

    def __init__(self, task_id: str, why: str) -> None:
        super().__init__(
            task_id,
            f"no user task {task_id!r}: {why}. List open tasks with "
            "get_open_user_tasks() / `wfe tasks list`",
        )


class UserTaskNotOpen(UserTaskError):
    """The task was completed already (or its workflow moved past it): nothing was
    done. ``completed_by`` / ``option`` tell who completed it how, when known."""

    def __init__(
        self,
        task_id: str,
        why: str,
        completed_by: str | None = None,
        option: str | None = None,
    ) -> None:
        super().__init__(task_id, f"user task {task_id!r} is not open: {why}; nothing was done")
        self.completed_by = completed_by
        self.option = option


class UserTaskNotAssigned(UserTaskError, PermissionError):
    """The completing user is neither the task's assigned user nor in its group."""

    def __init__(
        self, task_id: str, user: str, assigned_user: str | None, assigned_group: str | None
    ) -> None:
        to = " or ".join(
            x
            for x in (
                f"user {assigned_user!r}" if assigned_user is not None else "",
                f"group {assigned_group!r}" if assigned_group is not None else "",
            )
            if x
        )
        super().__init__(
            task_id,
            f"user {user!r} may not complete user task {task_id!r}: it is assigned to {to} "
            "(pass the user's groups with groups=[...] when it is assigned to a group)",
        )
        self.user = user


class UserTaskInvalidOption(UserTaskError, ValueError):
    """The chosen option is not one of the task's options."""

    def __init__(self, task_id: str, option: object, options: list[str]) -> None:
        super().__init__(
            task_id,
            f"{option!r} is not an option of user task {task_id!r}; choose one of {options}",
        )


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True, slots=True)
class UserTaskOption:
    """One choice of a task: the ``value`` a completion names and its ``label``."""

    value: str
    label: str


@dataclass(frozen=True, slots=True)
class OpenUserTask:
    """An open user task, as listed by ``client.get_open_user_tasks``."""

    task_id: str
    """Stable and unique: ``"<workflow id>.<pointer id>"``; complete it by this id."""
    workflow_id: str
    definition_id: str
    version: int
    step_name: str | None
    prompt: str
    assigned_user: str | None
    """The user it is assigned to, or None."""
    assigned_group: str | None
    """The group it is assigned to, or None."""
    options: tuple[UserTaskOption, ...]
    """The choices, in definition order (empty: any option value is accepted)."""
    created: datetime
    escalation_due: datetime | None
    """When the next escalation reassigns it, or None."""
    escalations: int
    """How many escalations have reassigned it so far."""
    workflow_status: WorkflowStatus
    reference: str | None = None

    def assigned_to(self, user: str | None, groups: tuple[str, ...] | list[str] = ()) -> bool:
        """Whether ``user`` (member of ``groups``) may complete this task."""
        if user is not None and self.assigned_user is not None and user == self.assigned_user:
            return True
        return self.assigned_group is not None and self.assigned_group in groups


def task_id_of(workflow_id: str, pointer_id: str) -> str:
    """The id of the user task on pointer ``pointer_id`` of workflow ``workflow_id``."""
    return f"{workflow_id}.{pointer_id}"


def parse_task_id(task_id: str) -> tuple[str, str]:
    """``(workflow id, pointer id)`` of a task id (workflow ids may hold dots; pointer
    ids do not); :class:`UserTaskNotFound` for a malformed one."""
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a string, not {type(task_id).__name__}")
    workflow_id, dot, pointer_id = task_id.rpartition(".")
    if not dot or not workflow_id or not pointer_id:
        raise UserTaskNotFound(task_id, "a task id looks like '<workflow id>.<pointer id>'")
    return workflow_id, pointer_id


def _record(p: ExecutionPointer) -> dict[str, Any] | None:
    """The task stored on ``p``, or None (also when its attributes could not be
    decoded here)."""
    attributes = p.extension_attributes
    value = attributes.get(USER_TASK_ATTRIBUTE) if isinstance(attributes, dict) else None
    return value if isinstance(value, dict) else None


def task_record(p: ExecutionPointer) -> dict[str, Any] | None:
    """The task stored on pointer ``p`` (a plain dict), or None when it holds none."""
    return _record(p)


def is_open(p: ExecutionPointer) -> bool:
    """Whether ``p`` holds a user task that waits for its completion."""
    record = _record(p)
    return (
        record is not None
        and p.end_time is None
        and not p.event_published
        and record.get("completed") is None
    )


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def to_open_task(instance: WorkflowInstance, p: ExecutionPointer) -> OpenUserTask:
    """The :class:`OpenUserTask` on pointer ``p`` (which :func:`is_open`)."""
    record = _record(p) or {}
    pending = record.get("pending") or []
    options = tuple(
        UserTaskOption(str(o[0]), str(o[1])) for o in record.get("options") or () if len(o) == 2
    )
    return OpenUserTask(
        task_id=str(record.get("task_id") or task_id_of(instance.id, p.id)),
        workflow_id=instance.id,
        definition_id=instance.workflow_definition_id,
        version=instance.version,
        step_name=p.step_name,
        prompt=str(record.get("prompt") or ""),
        assigned_user=record.get("user"),
        assigned_group=record.get("group"),
        options=options,
        created=_as_time(record.get("created")) or p.start_time or instance.create_time,
        escalation_due=_as_time(pending[0][0]) if pending else None,
        escalations=len(record.get("history") or ()),
        workflow_status=instance.status,
        reference=instance.reference,
    )


def open_user_tasks(instance: WorkflowInstance) -> list[OpenUserTask]:
    """The open user tasks of ``instance``, in pointer order (none once it ended)."""
    if instance.status not in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED):
        return []
    return [to_open_task(instance, p) for p in instance.execution_pointers if is_open(p)]


# ------------------------------------------------------------------------- definition
@dataclass
class EscalationSpec:
    """One ``with_escalation``: after ``after(data)`` from the task's creation, assign
    it to ``assign_to(data)`` / ``group(data)``; ``action_child`` is the first step of
    its action branch, or None."""

    after: Callable[[Any], timedelta]
    assign_to: Callable[[Any], str | None]
    group: Callable[[Any], str | None]
    action_child: int | None = None


@dataclass
class UserTaskSpec:
    """What the builder declared for one user task step (shared by its bodies)."""

    options: list[UserTaskOption] = field(default_factory=list)
    escalations: list[EscalationSpec] = field(default_factory=list)


def _option_marker(value: str) -> tuple[str, str]:
    return ("option", value)


def _escalation_marker(index: int) -> tuple[str, int]:
    return ("escalation", index)


def _text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"user task {what} must be a string or None, not {type(value).__name__}")
    return value


class UserTask(StepBody):
    """The step body of ``user_task``: opens the task, waits for its completion (with
    escalations), runs the chosen option's branch; outputs ``option`` (the chosen
    value), ``completed_by`` (the user) and ``completion_data`` (the data given)."""

    prompt: str = ""
    assign_to: str | None = None
    group: str | None = None
    option: str | None = None
    completed_by: str | None = None
    completion_data: Any = None

    def __init__(self, spec: UserTaskSpec | None = None) -> None:
        self._spec = spec if spec is not None else UserTaskSpec()

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        """Open, escalate, or finish the task (see the module)."""
        p = context.pointer
        record = _record(p)
        state = p.persistence_data if isinstance(p.persistence_data, dict) else {}
        if p.event_published:
            return self._completed(context, record, state)
        if record is None:
            return self._open(context)
        if state.get("phase") == "escalating":  # the escalation actions ran: wait on
            return _wait_again(p, record)
        return self._escalate(context, record)

    def _open(self, context: StepContext[Any]) -> ExecutionResult:
        p, data = context.pointer, context.data
        user, group = _text(self.assign_to, "assign_to"), _text(self.group, "group")
        if user is None and group is None:
            raise ValueError(
                f"user task {context.step.display_name}: assign_to and group are both None; "
                "assign it to a user or a group"
            )
        now = utcnow()
        pending: list[list[Any]] = []
        for index, esc in enumerate(self._spec.escalations):
            after = esc.after(data)
            if not isinstance(after, timedelta):
                raise TypeError(f"escalation {index} after= gave {after!r}, not a timedelta")
            pending.append([now + after, index])
        pending.sort(key=lambda e: (e[0], e[1]))
        task_id = task_id_of(context.workflow.id, p.id)
        record: dict[str, Any] = {
            "task_id": task_id,
            "prompt": str(self.prompt),
            "user": user,
            "group": group,
            "options": [[o.value, o.label] for o in self._spec.options],
            "created": now,
            "pending": pending,
            "history": [],
            "completed": None,
        }
        p.extension_attributes = {**p.extension_attributes, USER_TASK_ATTRIBUTE: record}
        result = ExecutionResult.wait_for_event(USER_TASK_EVENT, task_id, now)
        if pending:
            result.sleep_for = max(pending[0][0] - now, timedelta(0))
        return result

    def _escalate(self, context: StepContext[Any], record: dict[str, Any]) -> ExecutionResult:
        p, data, now = context.pointer, context.data, utcnow()
        pending = list(record.get("pending") or [])
        history = list(record.get("history") or [])
        actions: list[int] = []
        while pending:
            due = _as_time(pending[0][0])
            if due is not None and due > now:
                break
            _, index = pending.pop(0)
            known = isinstance(index, int) and 0 <= index < len(self._spec.escalations)
            if not known:
                continue  # the definition changed under a running task: skip it
            esc = self._spec.escalations[index]
            user = _text(esc.assign_to(data), "escalation assign_to")
            group = _text(esc.group(data), "escalation group")
            history.append(
                {
                    "at": now,
                    "from_user": record.get("user"),
                    "from_group": record.get("group"),
                    "user": user,
                    "group": group,
                }
            )
            record = {**record, "user": user, "group": group}
            if esc.action_child is not None:
                actions.append(esc.action_child)
        record = {**record, "pending": pending, "history": history}
        p.extension_attributes = {**p.extension_attributes, USER_TASK_ATTRIBUTE: record}
        if not actions:
            return _wait_again(p, record)
        p.active = True  # a waiting pointer is inactive: it must run when its actions end
        result = ExecutionResult.branch([context.item], {"phase": "escalating"})
        result.branch_children = actions
        return result

    def _completed(
        self, context: StepContext[Any], record: dict[str, Any] | None, state: dict[str, Any]
    ) -> ExecutionResult:
        p = context.pointer
        completion = p.event_data if isinstance(p.event_data, dict) else {}
        option = completion.get("option")
        self.option = None if option is None else str(option)
        self.completed_by = completion.get("user")
        self.completion_data = completion.get("data")
        if state.get("phase") == "chosen":  # the option's branch ran
            return ExecutionResult.outcome(self.option)
        if record is not None:
            done = {"user": self.completed_by, "option": self.option, "at": utcnow()}
            record = {**record, "completed": done, "pending": []}
            p.extension_attributes = {**p.extension_attributes, USER_TASK_ATTRIBUTE: record}
        step: WorkflowStep = context.step
        marker = _option_marker(self.option or "")
        chosen = [c for c, v in zip(step.children, step.child_values, strict=True) if v == marker]
        if not chosen:
            return ExecutionResult.outcome(self.option)
        result = ExecutionResult.branch([context.item], {"phase": "chosen"})
        result.branch_children = chosen
        result.outcome_value = self.option
        return result


def _wait_again(p: ExecutionPointer, record: dict[str, Any]) -> ExecutionResult:
    """Keep waiting on the task's existing subscription, waking for the next
    escalation (a new subscription would leave the first one behind)."""
    pending = record.get("pending") or []
    p.status = PointerStatus.WAITING_FOR_EVENT
    p.active = False
    p.sleep_until = _as_time(pending[0][0]) if pending else None
    return ExecutionResult.persist({"phase": "waiting"})


# ---------------------------------------------------------------------------- builder
def _fn(value: object, what: str) -> Callable[[Any], Any]:
    if callable(value) and not isinstance(value, type):
        return value
    if value is None or isinstance(value, str):
        return lambda _data: value
    raise DefinitionError(f"{what} must be a string, None or a function of the data")


class UserTaskChain(Generic[TData, TBranch]):
    """The user task methods of the builder returned by ``user_task`` (mixed into
    ``wfe_core.builder.UserTaskBuilder``; ``TBranch`` is the branch builder type)."""

    step: WorkflowStep
    _wb: Any
    _spec: UserTaskSpec
    _last_option: str | None = None

    _branch_first_step: Callable[[Callable[[TBranch], object], str], int]
    """Build a branch and return its first step's id (``StepBuilder``'s)."""

    def with_option(self, value: str, label: str | None = None) -> Self:
        """Offer the choice ``value`` (shown as ``label``, default the value); follow it
        with ``.do(branch)`` to run a branch when it is chosen."""
        if not isinstance(value, str) or not value:
            raise DefinitionError(
                f"{self.step.display_name}: an option value must be a non-empty string"
            )
        if any(o.value == value for o in self._spec.options):
            raise DefinitionError(f"{self.step.display_name}: option {value!r} is offered twice")
        self._spec.options.append(UserTaskOption(value, value if label is None else str(label)))
        self._last_option = value
        return self

    def do(self, branch: Callable[[TBranch], object]) -> Self:
        """Run ``branch`` when the option given by the last ``with_option`` is chosen."""
        value = self._last_option
        if value is None:
            raise DefinitionError(
                f"{self.step.display_name}: do() follows with_option(value, label)"
            )
        first = self._branch_first_step(branch, f"with_option({value!r})")
        self.step.children.append(first)
        self.step.child_values.append(_option_marker(value))
        self.step.is_container = True
        self._last_option = None
        return self

    def with_escalation(
        self,
        after: timedelta | Callable[[TData], timedelta],
        assign_to: str | Callable[[TData], str | None] | None = None,
        *,
        group: str | Callable[[TData], str | None] | None = None,
        action: Callable[[TBranch], object] | None = None,
    ) -> Self:
        """While the task is still open ``after`` (a timedelta or fn(data)) from its
        creation, reassign it to ``assign_to`` and/or ``group`` (values or fn(data);
        the assignment is replaced) and run ``action`` (a branch), if given."""
        if assign_to is None and group is None:
            raise DefinitionError(
                f"{self.step.display_name}: with_escalation needs assign_to= or group="
            )
        spec = EscalationSpec(
            after=duration_fn(after, f"{self.step.display_name} with_escalation after"),
            assign_to=_fn(assign_to, "with_escalation assign_to"),
            group=_fn(group, "with_escalation group"),
        )
        index = len(self._spec.escalations)
        if action is not None:
            spec.action_child = self._branch_first_step(action, "with_escalation action")
            self.step.children.append(spec.action_child)
            self.step.child_values.append(_escalation_marker(index))
            self.step.is_container = True
        self._spec.escalations.append(spec)
        return self


def new_user_task_spec() -> tuple[UserTaskSpec, Callable[[], UserTask]]:
    """A fresh spec and the body factory of a user task step using it."""
    spec = UserTaskSpec()

    def factory() -> UserTask:
        return UserTask(spec)

    return spec, factory


def prompt_fn(prompt: object) -> Callable[[Any], Any]:
    """``user_task``'s prompt (a string or fn(data)) as a function of the data."""
    if callable(prompt) and not isinstance(prompt, type):
        return prompt
    if isinstance(prompt, str):
        return lambda _data: prompt
    raise DefinitionError("user_task: the prompt must be a string or a function of the data")


def assignment_fn(value: object, what: str) -> Callable[[Any], Any]:
    """``assign_to`` / ``group`` (a string, None or fn(data)) as a function of the data."""
    return _fn(value, f"user_task {what}")
