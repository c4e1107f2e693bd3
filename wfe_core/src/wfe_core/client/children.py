"""Sub-workflows: starting a child at most once per attempt, and telling its parent
that it ended, durably.

A child's end reaches its parent as an event (``WORKFLOW_ENDED_EVENT``, key: the
child's id) published *after* the write that ended the child: two writes, no
transaction across them. So that a crash between them loses nothing, the event has a
fixed id (:func:`ended_event_id`: published at most once, however often it is
published), and before that write a ``process_workflow`` command is scheduled for the
child (:func:`guard_child_end`) -- due only after the ending host's lease would have
run out. Its pass finds the child ended and publishes the event unless it exists
(``WorkflowClient.publish_ended``); in the usual case it exists and the pass does nothing. A
store without SCHEDULED_COMMANDS has no such guard: there the event is lost if the
process dies in between.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from wfe_core.capabilities import Capability
from wfe_core.models import ScheduledCommand, WorkflowInstance, WorkflowStatus, utcnow
from wfe_core.options import HostOptions
from wfe_core.persistence import PersistenceProvider
from wfe_core.primitives import PARENT_ATTRIBUTE, WorkflowEnded

__all__ = ["child_id", "ended_event_id", "ended_payload", "guard_child_end", "parent_of"]


def ended_event_id(workflow_id: str) -> str:
    """The fixed id of the event telling a parent that child ``workflow_id`` ended: one
    per child, so publishing it again after a crash stores nothing twice."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wfe:ended:{workflow_id}"))


def parent_of(instance: WorkflowInstance) -> str | None:
    """The parent of a child workflow (``PARENT_ATTRIBUTE`` on its first pointer)."""
    first = instance.execution_pointers[0] if instance.execution_pointers else None
    parent = first.extension_attributes.get(PARENT_ATTRIBUTE) if first else None
    return str(parent) if parent else None


def child_id(pointer_id: str, attempt: int) -> str:
    """The id of the child started by attempt ``attempt`` of pointer ``pointer_id``:
    fixed, so a step run again after a crash finds the child it started before."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wfe:child:{pointer_id}:{attempt}"))


def ended_payload(instance: WorkflowInstance, status: WorkflowStatus) -> WorkflowEnded:
    """What the parent of ``instance`` receives when it ends."""
    return WorkflowEnded(instance.id, status.value, instance.data)


async def guard_child_end(
    persistence: PersistenceProvider, options: HostOptions, instance: WorkflowInstance
) -> None:
    """Called just before the write that ends ``instance`` (its final checkpoint, or a
    terminate): when it is a child, make sure a pass looks at it again later."""
    if parent_of(instance) is None or Capability.SCHEDULED_COMMANDS not in persistence.capabilities:
        return
    due = utcnow() + timedelta(seconds=options.lock_ttl + options.poll_interval)
    await persistence.schedule_command(
        ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, instance.id, due)
    )
