"""Idempotent starts and publishes: what a client does when the store refuses a start
because its idempotency key is taken, or a publish because its event id is.

A start with an idempotency key records a digest of its data (and the definition's
version is on the instance), so that a retry of the *same* request -- same definition
id, same data, same version -- is recognised even after the instance has changed its
data while running, and a *different* request reusing the key is refused with
:class:`~wfe_core.errors.IdempotencyKeyConflict`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from wfe_core.errors import (
    DuplicateIdempotencyKey,
    EventIdConflict,
    IdempotencyKeyConflict,
    WorkflowNotFound,
)
from wfe_core.models import Event, WorkflowInstance
from wfe_core.persistence import MAX_ID_LENGTH, PersistenceProvider, check_id
from wfe_core.serialization import Serializer

__all__ = [
    "START_DIGEST_ATTRIBUTE",
    "check_event_id",
    "existing_start",
    "same_event",
    "set_idempotency_key",
    "start_digest",
    "store_once",
]

START_DIGEST_ATTRIBUTE = "wfe.start_digest"
"""The extension attribute of an instance's first pointer holding the digest of the
data it was started with (only for instances started with an idempotency key)."""


def start_digest(serializer: Serializer, data: Any) -> str:
    """A digest of the stored form of ``data`` (dictionary keys sorted, so two equal
    dicts built in another order agree)."""
    primitive = serializer.to_primitive(data, "data")
    text = json.dumps(primitive, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def set_idempotency_key(
    instance: WorkflowInstance, key: str | None, serializer: Serializer
) -> None:
    """Put ``key`` (already checked) on a new instance with the digest of its data."""
    if key is None:
        return
    instance.idempotency_key = key
    if instance.execution_pointers:
        first = instance.execution_pointers[0]
        first.extension_attributes[START_DIGEST_ATTRIBUTE] = start_digest(serializer, instance.data)
        first.mark_changed()


async def existing_start(
    persistence: PersistenceProvider,
    instance: WorkflowInstance,
    existing_id: str,
    serializer: Serializer,
) -> str | None:
    """After the store refused ``instance`` because ``existing_id`` holds its key:
    ``existing_id`` when that instance was started with the same version and data,
    None when it is gone (purged meanwhile: the caller may try again); else raise
    :class:`~wfe_core.errors.IdempotencyKeyConflict`."""
    key = instance.idempotency_key or ""
    definition_id = instance.workflow_definition_id
    try:
        existing = await persistence.get_workflow_instance(existing_id)
    except WorkflowNotFound:
        return None
    if existing.version != instance.version:
        raise IdempotencyKeyConflict(
            definition_id,
            key,
            existing_id,
            f"version {existing.version}, not {instance.version}",
        )
    first = existing.execution_pointers[0] if existing.execution_pointers else None
    recorded = first.extension_attributes.get(START_DIGEST_ATTRIBUTE) if first else None
    if not isinstance(recorded, str):  # stored without a digest: its data as it is now
        recorded = start_digest(serializer, existing.data)
    if recorded != start_digest(serializer, instance.data):
        raise IdempotencyKeyConflict(definition_id, key, existing_id, "other data")
    return existing_id


async def store_once(
    store: Callable[[WorkflowInstance], Awaitable[None]],
    persistence: PersistenceProvider,
    instance: WorkflowInstance,
    serializer: Serializer,
) -> str:
    """``store(instance)`` and return its id; when the store refuses it because its
    idempotency key is taken, the holder's id (see :func:`existing_start`) -- storing
    again only when the holder was purged in between."""
    while True:
        try:
            await store(instance)
            return instance.id
        except DuplicateIdempotencyKey as taken:
            found = await existing_start(persistence, instance, taken.existing_id, serializer)
            if found is not None:
                return found


def check_event_id(event_id: object) -> None:
    """Argument check for ``publish_event(..., event_id=...)``: None, or a non-empty
    string of at most :data:`~wfe_core.persistence.MAX_ID_LENGTH` characters that every
    store keeps."""
    if event_id is None:
        return
    if not isinstance(event_id, str):
        raise TypeError(f"event_id must be a string or None, not {type(event_id).__name__}")
    if not event_id:
        raise ValueError(
            f"event_id must be a non-empty string of at most {MAX_ID_LENGTH} characters "
            "(or None to have one assigned)"
        )
    check_id(event_id, "event_id")


def same_event(stored: Event, name: str, key: str) -> str:
    """``stored.id`` when the stored event has this name and key (a re-publish of the
    same event); else raise :class:`~wfe_core.errors.EventIdConflict`."""
    if (stored.event_name, stored.event_key) != (name, key):
        raise EventIdConflict(stored.id, (stored.event_name, stored.event_key), (name, key))
    return stored.id
