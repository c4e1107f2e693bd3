"""How ``wfe tasks list`` and ``wfe show`` print open user tasks (a leaf of the CLI:
it imports no other CLI module, so :mod:`wfe_core.cli.output` can use it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from wfe_core.user_tasks import OpenUserTask

__all__ = ["user_task_json", "user_tasks_table"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _utc(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def user_task_json(task: OpenUserTask) -> dict[str, Any]:
    """An open user task as a JSON document."""
    return {
        "task_id": task.task_id,
        "workflow_id": task.workflow_id,
        "definition": task.definition_id,
        "version": task.version,
        "step": task.step_name,
        "prompt": task.prompt,
        "assigned_user": task.assigned_user,
        "assigned_group": task.assigned_group,
        "options": [{"value": o.value, "label": o.label} for o in task.options],
        "created": _iso(task.created),
        "escalation_due": _iso(task.escalation_due),
        "escalations": task.escalations,
        "workflow_status": task.workflow_status.value,
        "reference": task.reference,
    }


def _assignee(task: OpenUserTask) -> str:
    parts = []
    if task.assigned_user is not None:
        parts.append(f"user {task.assigned_user}")
    if task.assigned_group is not None:
        parts.append(f"group {task.assigned_group}")
    return " or ".join(parts) or "-"


def user_tasks_table(tasks: list[OpenUserTask], *, with_workflow: bool = True) -> Table:
    """The tasks as a table (times UTC); ``with_workflow``: with the workflow's
    definition column (left out by ``wfe show``, which is about one instance)."""
    table = Table(title="open user tasks (times UTC)", title_justify="left")
    columns = ["task id", "prompt", "assigned to", "options", "created", "escalation"]
    if with_workflow:
        columns.insert(1, "definition")
    for column in columns:
        table.add_column(column, no_wrap=column == "task id")
    for t in tasks:
        options = ", ".join(
            o.value if o.label == o.value else f"{o.value} ({o.label})" for o in t.options
        )
        escalation = "-" if t.escalation_due is None else f"due {_utc(t.escalation_due)}"
        if t.escalations:
            escalation += f" ({t.escalations} done)"
        row = [t.task_id, t.prompt, _assignee(t), options or "(any)", _utc(t.created), escalation]
        if with_workflow:
            row.insert(1, f"{t.definition_id} v{t.version}")
        table.add_row(*row)
    return table
