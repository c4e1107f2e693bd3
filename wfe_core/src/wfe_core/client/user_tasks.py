"""User tasks on the client: list the open ones, complete one.

The task lives on its workflow's execution pointer (see :mod:`wfe_core.user_tasks`),
so listing reads instances: with ``workflow_id=`` one instance is read; otherwise every
RUNNABLE and SUSPENDED instance (of ``definition_id`` when given) is paged through with
``query_workflows`` (``page_size`` at a time, keyed on the creation time) and its
pointers are read -- a cost that grows with the number of unfinished instances, fine
for an inbox page or a CLI, not for a hot loop over a large store.

Completing validates the task (it exists, is open, the user may complete it, the
option is one of its options) and then publishes the completion event under a fixed
event id derived from the task id. The store keeps one event per id, so of two
concurrent completions exactly one is stored and delivered; the other is refused with
:class:`~wfe_core.user_tasks.UserTaskNotOpen`, as is any completion after the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from wfe_core.errors import EventNotFound, WorkflowNotFound
from wfe_core.models import Event, WorkflowInstance, WorkflowStatus, new_id
from wfe_core.user_tasks import (
    USER_TASK_EVENT,
    OpenUserTask,
    UserTaskInvalidOption,
    UserTaskNotAssigned,
    UserTaskNotFound,
    UserTaskNotOpen,
    is_open,
    open_user_tasks,
    parse_task_id,
    task_record,
    to_open_task,
)

if TYPE_CHECKING:
    from wfe_core.client.core import ClientCore

__all__ = ["complete_user_task", "completion_event_id", "get_open_user_tasks"]

_OPEN_STATUSES = (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED)


def completion_event_id(task_id: str) -> str:
    """The fixed id of the completion event of ``task_id`` (short enough for every
    store whatever the workflow id's length)."""
    return "wfe.user_task." + hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()


def _groups(group: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    if group is None:
        return ()
    if isinstance(group, str):
        return (group,)
    groups = tuple(group)
    for g in groups:
        if not isinstance(g, str):
            raise TypeError(f"{what} must hold strings, not {type(g).__name__}")
    return groups


def _matches(task: OpenUserTask, user: str | None, groups: tuple[str, ...]) -> bool:
    if user is None and not groups:
        return True
    return task.assigned_to(user, groups)


async def get_open_user_tasks(
    client: ClientCore,
    *,
    user: str | None = None,
    group: str | Sequence[str] | None = None,
    workflow_id: str | None = None,
    definition_id: str | None = None,
    page_size: int = 200,
) -> list[OpenUserTask]:
    """The open user tasks, oldest first (see the module for the cost).

    Without ``user`` and ``group`` every open task; otherwise those the person may
    complete: assigned to ``user``, or to ``group`` (one name, or several: the
    person's groups). ``workflow_id`` reads that instance only (an unknown id lists
    nothing); ``definition_id`` limits the scan to one definition."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    groups = _groups(group, "group")
    found: list[OpenUserTask] = []
    if workflow_id is not None:
        try:
            instance = await client.persistence.get_workflow_instance(workflow_id)
        except WorkflowNotFound:
            return []
        if definition_id is None or instance.workflow_definition_id == definition_id:
            found = open_user_tasks(instance)
    else:
        for status in _OPEN_STATUSES:
            async for instance in _scan(client, status, definition_id, page_size):
                found.extend(open_user_tasks(instance))
    tasks = [t for t in found if _matches(t, user, groups)]
    tasks.sort(key=lambda t: (t.created, t.task_id))
    return tasks


async def _scan(
    client: ClientCore, status: WorkflowStatus, definition_id: str | None, page_size: int
) -> Any:
    """Every instance in ``status``, a page at a time, keyed on ``create_time`` (ties
    skipped by count), so instances created meanwhile neither repeat nor shift pages."""
    cursor = None
    seen_at_cursor = 0
    while True:
        page: list[WorkflowInstance] = await client.persistence.query_workflows(
            status=status,
            definition_id=definition_id,
            created_from=cursor,
            skip=seen_at_cursor if cursor is not None else 0,
            take=page_size,
        )
        for instance in page:
            yield instance
        if len(page) < page_size:
            return
        last = page[-1].create_time
        at_last = sum(1 for i in page if i.create_time == last)
        if cursor == last:
            seen_at_cursor += at_last
        else:
            cursor, seen_at_cursor = last, at_last


def _completion_of(event: Event) -> tuple[str | None, str | None, str | None]:
    """``(user, option, nonce)`` of a stored completion event."""
    data = event.event_data
    if not isinstance(data, dict):
        return None, None, None
    user, option, nonce = data.get("user"), data.get("option"), data.get("nonce")
    return (
        user if isinstance(user, str) else None,
        option if isinstance(option, str) else None,
        nonce if isinstance(nonce, str) else None,
    )


async def _stored_completion(client: ClientCore, task_id: str) -> Event | None:
    try:
        return await client.persistence.get_event(completion_event_id(task_id))
    except EventNotFound:
        return None


async def complete_user_task(
    client: ClientCore,
    task_id: str,
    option: str,
    *,
    user: str,
    groups: str | Iterable[str] = (),
    data: Any = None,
) -> None:
    """Complete open task ``task_id`` as ``user`` (a member of ``groups``) with
    ``option`` and ``data`` (any value the store can keep; the step outputs it as
    ``completion_data``).

    Raises :class:`~wfe_core.user_tasks.UserTaskNotFound` (no such task),
    :class:`~wfe_core.user_tasks.UserTaskNotOpen` (completed already -- also when
    another completion won a race -- or its workflow ended),
    :class:`~wfe_core.user_tasks.UserTaskNotAssigned` (``user`` is neither the
    assignee nor in the assigned group) and
    :class:`~wfe_core.user_tasks.UserTaskInvalidOption`; nothing is done then."""
    if not isinstance(user, str) or not user:
        raise ValueError("user must be the completing user's non-empty name")
    if not isinstance(option, str):
        raise TypeError(f"option must be a string, not {type(option).__name__}")
    member_of = _groups(groups, "groups")
    workflow_id, pointer_id = parse_task_id(task_id)
    try:
        instance = await client.persistence.get_workflow_instance(workflow_id)
    except WorkflowNotFound:
        raise UserTaskNotFound(task_id, f"workflow {workflow_id!r} does not exist") from None
    p = instance.pointer(pointer_id)
    record = task_record(p) if p is not None else None
    if p is None or record is None:
        raise UserTaskNotFound(task_id, f"workflow {workflow_id!r} has no such user task step")
    stored = await _stored_completion(client, task_id)
    if stored is not None:
        by, chosen, _ = _completion_of(stored)
        raise UserTaskNotOpen(task_id, f"{by!r} completed it with {chosen!r}", by, chosen)
    if not is_open(p) or instance.status not in _OPEN_STATUSES:
        done = record.get("completed")
        if isinstance(done, dict):
            by, chosen = done.get("user"), done.get("option")
            raise UserTaskNotOpen(task_id, f"{by!r} completed it with {chosen!r}", by, chosen)
        raise UserTaskNotOpen(
            task_id, f"its workflow is {instance.status.value} and the step has ended"
        )
    task = to_open_task(instance, p)
    if not task.assigned_to(user, member_of):
        raise UserTaskNotAssigned(task_id, user, task.assigned_user, task.assigned_group)
    values = [o.value for o in task.options]
    if values and option not in values:
        raise UserTaskInvalidOption(task_id, option, values)
    nonce = new_id()
    payload = {"user": user, "option": option, "data": data, "nonce": nonce}
    event_id = completion_event_id(task_id)
    await client._publish(USER_TASK_EVENT, task_id, payload, event_id=event_id)
    stored = await _stored_completion(client, task_id)
    if stored is not None:
        by, chosen, stored_nonce = _completion_of(stored)
        if stored_nonce != nonce:  # another completion was stored first
            raise UserTaskNotOpen(task_id, f"{by!r} completed it with {chosen!r}", by, chosen)
