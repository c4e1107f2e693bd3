"""How ``wfe`` prints: JSON documents for scripts, rich tables for people.

Values of a type the command does not know (stored data it could not decode) are
printed as they are stored, marked with :data:`RAW_NOTE`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from wfe_core.cli.task_output import user_task_json, user_tasks_table
from wfe_core.coercion import jsonable
from wfe_core.errors import SerializationError
from wfe_core.models import (
    Event,
    ExecutionError,
    ExecutionPointer,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.serialization import Undecodable
from wfe_core.user_tasks import open_user_tasks

__all__ = [
    "RAW_NOTE",
    "data_text",
    "emit_json",
    "error_json",
    "event_json",
    "instance_json",
    "iso",
    "pointer_json",
    "print_event",
    "print_instance",
    "print_list",
    "read_error",
    "styled",
    "summary_json",
    "table_console",
    "undecodable_values",
    "utc_clock",
    "utc_time",
]

RAW_NOTE = "raw: type not registered here"
"""How output marks a value shown as stored because its type is not known here."""


def emit_json(document: Any) -> None:
    """Print ``document`` as indented JSON on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def table_console() -> Console:
    """A console for tables; when stdout is not a terminal (a pipe, a file) tables get
    room for full ids instead of rich's default 80 columns."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, soft_wrap=False, width=160)
    return console


def utc_time(value: datetime | None) -> str:
    """``2024-05-01 12:00:00Z``, or ``-`` for None."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def utc_clock(value: datetime | None) -> str:
    """``12:00:00`` (UTC), or ``-`` for None."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%H:%M:%S")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text, or None."""
    return value.isoformat() if value is not None else None


def summary_json(inst: WorkflowInstance) -> dict[str, Any]:
    """An instance's header as JSON (what ``wfe list --json`` prints per instance)."""
    return {
        "id": inst.id,
        "definition": inst.workflow_definition_id,
        "version": inst.version,
        "status": inst.status.value,
        "reference": inst.reference,
        "idempotency_key": inst.idempotency_key,
        "description": inst.description,
        "create_time": iso(inst.create_time),
        "complete_time": iso(inst.complete_time),
        "next_execution": iso(inst.next_execution),
        "revision": inst.revision,
    }


def pointer_json(p: ExecutionPointer) -> dict[str, Any]:
    """An execution pointer as JSON."""
    return {
        "id": p.id,
        "step_id": p.step_id,
        "step_name": p.step_name,
        "status": p.status.value,
        "active": p.active,
        "start_time": iso(p.start_time),
        "end_time": iso(p.end_time),
        "sleep_until": iso(p.sleep_until),
        "event_name": p.event_name,
        "event_key": p.event_key,
        "event_published": p.event_published,
        "retry_count": p.retry_count,
        "outcome": jsonable(p.outcome),
        "children": list(p.children),
        "scope": list(p.scope),
    }


def error_json(e: ExecutionError) -> dict[str, Any]:
    """An execution error as JSON."""
    return {
        "id": e.id,
        "time": iso(e.error_time),
        "pointer_id": e.execution_pointer_id,
        "type": e.error_type,
        "message": e.message,
        "traceback": e.traceback,
    }


_STATUS_STYLE = {
    "runnable": "cyan",
    "suspended": "yellow",
    "complete": "green",
    "terminated": "red",
    "failed": "red",
    "cancelled": "dim",
    "waiting_for_event": "cyan",
    "sleeping": "cyan",
}


def styled(status: str) -> str:
    """``status`` in rich markup coloured by what it means."""
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def read_error(exc: SerializationError, app: str | None) -> click.ClickException:
    """What a command reports when stored data cannot be read (with a hint about
    ``--app`` when none was given)."""
    hint = (
        ""
        if app
        else "; pass --app module:attr (or set WFE_APP) so wfe knows your workflows' data types"
    )
    return click.ClickException(f"cannot read the workflow data: {exc}{hint}")


def undecodable_values(inst: WorkflowInstance) -> list[tuple[str, Undecodable]]:
    """The instance's data and pointer values that could not be decoded, by field."""
    found: list[tuple[str, Undecodable]] = []
    if isinstance(inst.data, Undecodable):
        found.append(("data", inst.data))
    for p in inst.execution_pointers:
        for name in ("persistence_data", "event_data", "context_item", "outcome"):
            value = getattr(p, name, None)
            if isinstance(value, Undecodable):
                found.append((f"pointer {p.step_name or p.step_id} ({p.id}).{name}", value))
    return found


def data_text(value: Any) -> str:
    """A value as one line of JSON, marked when it is shown as stored (undecodable)."""
    text = json.dumps(jsonable(value), ensure_ascii=False)
    return f"{text}  ({RAW_NOTE})" if isinstance(value, Undecodable) else text


def print_instance(inst: WorkflowInstance, errors: list[ExecutionError]) -> None:
    """``wfe show`` of an instance as tables: header, data, pointers, errors."""
    console = table_console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("workflow", inst.id)
    head.add_row("definition", f"{inst.workflow_definition_id} v{inst.version}")
    head.add_row("status", styled(inst.status.value))
    if inst.reference:
        head.add_row("reference", inst.reference)
    if inst.idempotency_key is not None:
        head.add_row("idempotency key", inst.idempotency_key)
    if inst.description:
        head.add_row("description", inst.description)
    head.add_row("created", utc_time(inst.create_time))
    head.add_row("completed", utc_time(inst.complete_time))
    if inst.status is WorkflowStatus.RUNNABLE:
        head.add_row("next run", utc_time(inst.next_execution))
    head.add_row("revision", str(inst.revision))
    set_aside = getattr(inst, "set_aside", None)
    if set_aside:
        head.add_row("set aside", str(set_aside))
    head.add_row("data", data_text(inst.data))
    for name, value in undecodable_values(inst):
        head.add_row("undecodable", value.reason if name == "data" else f"{name}: {value.reason}")
    console.print(head)
    pointers = Table(title="execution pointers (times UTC)", title_justify="left")
    with_outcome = any(p.outcome is not None for p in inst.execution_pointers)
    columns = ["#", "step", "status", "started", "ended", "waiting for", "tries"]
    for column in [*columns, "outcome"] if with_outcome else columns:
        pointers.add_column(
            column,
            justify="right" if column in ("#", "tries") else "left",
            no_wrap=column in ("#", "step", "status", "started", "ended"),
        )
    for i, p in enumerate(inst.execution_pointers, 1):
        waiting = ""
        if p.event_name is not None:
            waiting = f"{p.event_name} {p.event_key!r}" + (
                " (received)" if p.event_published else ""
            )
        if p.sleep_until is not None and p.end_time is None:
            waiting += (" or " if waiting else "") + f"until {utc_clock(p.sleep_until)}"
        row = [
            str(i),
            p.step_name or str(p.step_id),
            styled(p.status.value),
            utc_clock(p.start_time),
            utc_clock(p.end_time),
            waiting,
            str(p.retry_count),
        ]
        if with_outcome:
            if p.outcome is None:
                row.append("")
            else:
                row.append(
                    data_text(p.outcome) if isinstance(p.outcome, Undecodable) else repr(p.outcome)
                )
        pointers.add_row(*row)
    console.print(pointers)
    tasks = open_user_tasks(inst)
    if tasks:
        console.print(user_tasks_table(tasks, with_workflow=False))
    if not errors:
        console.print("errors: none")
        return
    table = Table(title="errors", title_justify="left")
    table.add_column("time")
    table.add_column("step")
    table.add_column("type")
    table.add_column("message")
    names = {p.id: p.step_name or str(p.step_id) for p in inst.execution_pointers}
    for e in errors:
        step = names.get(e.execution_pointer_id or "", e.execution_pointer_id or "-")
        table.add_row(utc_time(e.error_time), step, e.error_type or "-", e.message)
    console.print(table)


def instance_json(inst: WorkflowInstance, errors: list[ExecutionError]) -> dict[str, Any]:
    """``wfe show --json`` of an instance: header, data, pointers, errors, what was set
    aside and which values could not be decoded."""
    doc = summary_json(inst)
    doc["data"] = jsonable(inst.data)
    doc["pointers"] = [pointer_json(p) for p in inst.execution_pointers]
    doc["errors"] = [error_json(e) for e in errors]
    doc["user_tasks"] = [user_task_json(t) for t in open_user_tasks(inst)]
    doc["set_aside"] = getattr(inst, "set_aside", None)
    doc["undecodable"] = [
        {"field": name, "reason": value.reason, "note": RAW_NOTE}
        for name, value in undecodable_values(inst)
    ]
    return doc


def event_json(event: Event) -> dict[str, Any]:
    """``wfe show --json`` of an event."""
    return {
        "kind": "event",
        "id": event.id,
        "name": event.event_name,
        "key": event.event_key,
        "event_time": iso(event.event_time),
        "is_processed": event.is_processed,
        "set_aside": event.set_aside,
        "data": jsonable(event.event_data),
        "undecodable": (
            [{"field": "event_data", "reason": event.event_data.reason, "note": RAW_NOTE}]
            if isinstance(event.event_data, Undecodable)
            else []
        ),
    }


def print_event(event: Event) -> None:
    """``wfe show`` of an event: name, key, time, state (and why it was set aside), data."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("event", event.id)
    head.add_row("name", event.event_name)
    head.add_row("key", repr(event.event_key))
    head.add_row("time", utc_time(event.event_time))
    state = "processed" if event.is_processed else "waiting for delivery"
    head.add_row("state", "set aside" if event.set_aside is not None else state)
    if event.set_aside is not None:
        head.add_row("set aside", event.set_aside)
    head.add_row("data", data_text(event.event_data))
    table_console().print(head)


def print_list(
    page: list[WorkflowInstance],
    *,
    skip: int,
    take: int,
    total: int,
    more: bool,
    oldest_first: bool,
) -> None:
    """``wfe list`` as a table, with the range shown, the total and the next page."""
    console = table_console()
    if not page:
        message = "no workflows on this page match" if skip else "no workflows match"
        console.print(message + (f" ({total} in all)" if skip and total else ""))
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("definition", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("reference")
    table.add_column("created")
    table.add_column("completed")
    for inst in page:
        table.add_row(
            inst.id,
            f"{inst.workflow_definition_id} v{inst.version}",
            styled(inst.status.value),
            inst.reference or "",
            utc_time(inst.create_time),
            utc_time(inst.complete_time),
        )
    console.print(table)
    line = f"showing {skip + 1}-{skip + len(page)} of {total}"
    if more:
        line += f"; more: wfe list --skip {skip + take} --take {take}"
        line += " --oldest-first" if oldest_first else ""
    console.print(line)
