"""Poison data never stops other work.

A stored event or workflow instance whose user data this process cannot decode (it
names a type that is not registered here, or one whose class no longer fits the stored
fields) reaches the host as an :class:`~wfe_core.serialization.Undecodable` value:
providers never fail a read because of user data. The host then calls one of the two
functions below, which take it out of the flow with the reason stored and reported
once, so the rest of the work goes on:

* :func:`set_aside_if_poison` -- an event: set aside in the store
  (:meth:`~wfe_core.persistence.EventRepository.set_aside_event`: processed for good,
  reason in ``Event.set_aside``), a ``EVENT_SET_ASIDE`` lifecycle event and one warning
  line, published only by the caller that set it aside. Later events with the same
  name and key are delivered past it.
* :func:`suspend_if_undecodable` -- an instance about to run: an
  :class:`~wfe_core.models.ExecutionError` naming the field and the reason, status
  ``SUSPENDED`` (the stored data is preserved: an ``Undecodable`` encodes back
  verbatim), ``WORKFLOW_ERROR`` and ``WORKFLOW_SUSPENDED`` lifecycle events and one
  warning line. Once the type is registered and the workflow resumed, it runs normally.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from wfe_core.engine import WorkflowEngine
from wfe_core.errors import ConcurrencyError, EventNotFound
from wfe_core.models import (
    Event,
    ExecutionError,
    LifecycleEvent,
    LifecycleEventType,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.serialization import Undecodable, undecodable_fields

__all__ = ["set_aside_if_poison", "suspend_if_undecodable", "undecodable_message"]

log = logging.getLogger("wfe.poison")

_ERROR_TYPE = "wfe_core.errors.SerializationError"


async def set_aside_if_poison(host: WorkflowEngine, event: Event) -> bool:
    """Whether ``event`` must not be delivered because it is poison: it was set aside
    before, or its data is :class:`~wfe_core.serialization.Undecodable` (then it is set
    aside now; the caller that sets it aside publishes the lifecycle event and logs the
    warning, so both happen once per event however many hosts see it)."""
    if event.set_aside is not None:
        return True
    data = event.event_data
    if not isinstance(data, Undecodable):
        return False
    reason = data.reason
    try:
        first = await host.persistence.set_aside_event(event.id, reason)
    except EventNotFound:
        return True  # deleted meanwhile: nothing to deliver
    if first:
        message = (
            f"event {event.id} ({event.event_name!r}, key {event.event_key!r}) was set aside: "
            f"its data cannot be decoded: {reason}"
        )
        log.warning("%s", message, extra={"event_id": event.id})
        await host.publish_lifecycle(
            LifecycleEvent(
                type=LifecycleEventType.EVENT_SET_ASIDE,
                workflow_id="",
                workflow_definition_id="",
                version=0,
                message=message,
            )
        )
    return True


def undecodable_message(instance: WorkflowInstance) -> tuple[str, str | None] | None:
    """The error message for the first undecodable value of ``instance`` and the id of
    the pointer holding it (None for the workflow data), or None when there is none."""
    found = undecodable_fields(instance)
    if not found:
        return None
    field, pointer_id, value = found[0]
    if pointer_id is None:
        what = "workflow data"
    else:
        pointer = instance.pointer(pointer_id)
        step = f" (step {pointer.step_name or pointer.step_id})" if pointer is not None else ""
        what = f"{field.rsplit('.', 1)[-1]} of execution pointer {pointer_id}{step}"
    return (
        f"{what} cannot be decoded: {value.reason}; register the missing type "
        "(host.register_type) and resume the workflow",
        pointer_id,
    )


async def suspend_if_undecodable(
    host: WorkflowEngine,
    instance: WorkflowInstance,
    persist: Callable[[WorkflowInstance], Awaitable[None]] | None = None,
) -> bool:
    """Suspend ``instance`` when its data or a pointer's data cannot be decoded here;
    return whether it did (the pass must then not run it).

    Records an :class:`~wfe_core.models.ExecutionError` naming the field and the reason,
    sets the status to SUSPENDED and saves the instance with ``persist`` (default:
    ``persist_workflow`` under the host's claim, ``owner=host.owner_id``), publishes
    ``WORKFLOW_ERROR`` and ``WORKFLOW_SUSPENDED`` and logs one warning. A concurrent
    change, a lost claim or a pending control request (``ConcurrencyError`` and its
    subclasses) leaves the instance to whoever changed it or holds it.
    """
    found = undecodable_message(instance)
    if found is None:
        return False
    message, pointer_id = found
    now = utcnow()
    await host.persistence.persist_errors(
        [
            ExecutionError(
                workflow_id=instance.id,
                execution_pointer_id=pointer_id,
                message=message,
                error_type=_ERROR_TYPE,
                error_time=now,
            )
        ]
    )
    instance.status = WorkflowStatus.SUSPENDED
    instance.next_execution = None
    try:
        if persist is not None:
            await persist(instance)
        else:
            await host.persistence.persist_workflow(instance, owner=host.owner_id)
    except ConcurrencyError:  # also LeaseLost / ControlPending: the holder decides
        log.info(
            "workflow %s changed elsewhere while being suspended as undecodable",
            instance.id,
            extra={"workflow_id": instance.id, "definition": instance.workflow_definition_id},
        )
        return True
    log.warning(
        "workflow %s suspended: %s",
        instance.id,
        message,
        extra={
            "workflow_id": instance.id,
            "definition": instance.workflow_definition_id,
            "pointer_id": pointer_id,
        },
    )
    for kind in (LifecycleEventType.WORKFLOW_ERROR, LifecycleEventType.WORKFLOW_SUSPENDED):
        event = host.lifecycle_event(kind, instance)
        event.message = message
        if pointer_id is not None:
            pointer = instance.pointer(pointer_id)
            event.execution_pointer_id = pointer_id
            if pointer is not None:
                event.step_id = pointer.step_id
                event.step_name = pointer.step_name
        await host.publish_lifecycle(event)
    return True
