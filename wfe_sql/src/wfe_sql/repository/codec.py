"""The row codec: stored forms of instances, pointers, subscriptions and events.

:class:`RowCodec` turns model objects into the parameter values of the compiled
statements and result rows back into fresh model objects, by hand (no SQLAlchemy at run
time). User values go through the provider's
:class:`~wfe_core.serialization.Serializer`; a stored value this process cannot rebuild
comes back as an :class:`~wfe_core.serialization.Undecodable`, so a read never fails
because of user data. Times are stored as microseconds since the epoch
(:mod:`wfe_sql.times`).

Internal to :mod:`wfe_sql`: the repository mixins of :mod:`wfe_sql.repository` use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from wfe_core.errors import WfeError
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionPointer,
    PointerList,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import check_subscription_text as _check_subscription_text
from wfe_core.persistence import storable_key as _storable_key
from wfe_core.serialization import Serializer
from wfe_core.telemetry import decode_headers

from wfe_sql.driver import Row
from wfe_sql.statements import (
    ERROR_COLUMNS,
    EVENT_COLUMNS,
    HEADER_READ_COLUMNS,
    IN_CHUNK,
    POINTER_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    WORKFLOW_COLUMNS,
    padded,
)
from wfe_sql.times import EPOCH, from_micros, from_micros_opt, to_micros, to_micros_opt

__all__ = ["RowCodec"]

_TAG = '"$wfe"'  # the key of every tagged value in the serializer's stored form
_FINISHED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
_WF_STATUS: dict[str, WorkflowStatus] = {s.value: s for s in WorkflowStatus}
_PTR_STATUS: dict[str, PointerStatus] = {s.value: s for s in PointerStatus}
_HEADER_WIDTH = len(HEADER_READ_COLUMNS)  # header columns in a select_instance row

# The row layouts the loaders unpack by position.
assert WORKFLOW_COLUMNS == (
    "id",
    "workflow_definition_id",
    "version",
    "description",
    "reference",
    "status",
    "data",
    "next_execution",
    "create_time",
    "complete_time",
    "revision",
)
assert POINTER_COLUMNS == (
    "workflow_id",
    "id",
    "step_id",
    "step_name",
    "active",
    "status",
    "sleep_until",
    "persistence_data",
    "start_time",
    "end_time",
    "event_name",
    "event_key",
    "event_published",
    "event_data",
    "retry_count",
    "children",
    "context_item",
    "predecessor_id",
    "outcome",
    "scope",
    "extension_attributes",
)
assert SUBSCRIPTION_COLUMNS == (
    "id",
    "workflow_id",
    "step_id",
    "execution_pointer_id",
    "event_name",
    "event_key",
    "subscribe_as_of",
    "subscription_data",
    "external_token",
    "external_worker_id",
    "external_token_expiry",
)
assert EVENT_COLUMNS == (
    "id",
    "event_name",
    "event_key",
    "event_data",
    "event_time",
    "is_processed",
    "set_aside",
    "headers",
)
assert ERROR_COLUMNS == (
    "id",
    "workflow_id",
    "execution_pointer_id",
    "error_time",
    "message",
    "error_type",
    "traceback",
)


class _SlowPath(Exception):
    """A value the fast pointer encoding does not handle (the checked one does)."""


def _micros_fast(value: Any) -> int | None:
    """Stored microseconds of a UTC datetime (None passes); others: :class:`_SlowPath`."""
    if value is None:
        return None
    if type(value) is datetime and value.tzinfo is UTC:
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise _SlowPath


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), IN_CHUNK):
        yield padded(ids[start : start + IN_CHUNK])


def _workflow_status(value: Any) -> str:
    try:
        return _WF_STATUS[value].value
    except (KeyError, TypeError):
        raise ValueError(f"instance.status must be a WorkflowStatus, not {value!r}") from None


def _workflow_filter_values(
    status: WorkflowStatus | None,
    definition_id: str | None,
    reference: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    idempotency_key: str | None = None,
) -> dict[str, Any] | None:
    """The ``p_<filter>`` values of the ``query_workflows`` filters given, or None when
    a key filter cannot match anything (not a storable key)."""
    keys = (definition_id, reference, idempotency_key)
    if any(f is not None and not _storable_key(f) for f in keys):
        return None
    values: dict[str, Any] = {}
    if status is not None:
        values["p_status"] = _workflow_status(status)
    if definition_id is not None:
        values["p_definition_id"] = definition_id
    if reference is not None:
        values["p_reference"] = reference
    if created_from is not None:
        values["p_created_from"] = to_micros(created_from, "created_from")
    if created_to is not None:
        values["p_created_to"] = to_micros(created_to, "created_to")
    if idempotency_key is not None:
        values["p_idempotency_key"] = idempotency_key
    return values


def _pointer_status(value: Any, what: str) -> str:
    try:
        return _PTR_STATUS[value].value
    except (KeyError, TypeError):
        raise ValueError(f"{what}.status must be a PointerStatus, not {value!r}") from None


class RowCodec:
    """Stored forms of model objects and the objects rebuilt from rows (a mixin of
    :class:`~wfe_sql.SqlPersistenceProvider`; :meth:`_init_codec` sets it up)."""

    _serializer: Serializer
    _dumps: Callable[[Any, str], str]
    _plain_json: bool

    def _init_codec(self, serializer: Serializer) -> None:
        """Use ``serializer`` for user values."""
        self._serializer = serializer
        self._dumps = serializer.dumps
        # Plain JSON text (no tagged value inside) is read with orjson directly, unless
        # a serializer subclass may read it differently.
        self._plain_json = type(serializer) is Serializer

    def _enc(self, value: Any, what: str) -> str | None:
        """The stored JSON text of a user value (``None`` is SQL ``NULL``)."""
        if value is None:
            return None
        return self._dumps(value, what)

    def _dec(self, text: str | None, what: str) -> Any:
        """A fresh object rebuilt from stored JSON text; text that cannot be rebuilt in
        this process (e.g. it names a type not registered here) comes back as an
        :class:`~wfe_core.serialization.Undecodable`, which encodes back to ``text``
        verbatim: a read never fails because of user data."""
        if text is None:
            return None
        if self._plain_json and _TAG not in text:
            # No tagged value inside: the stored form is plain JSON, which the serializer
            # returns as it is (see wfe_core.serialization, "Stored form").
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                pass  # e.g. nested deeper than orjson allows: the serializer copes
        return self._serializer.loads_or_undecodable(text, what)

    def _dec_field(self, text: str | None, pointer_id: str, name: str) -> Any:
        """:meth:`_dec` for a pointer field (the error path is only built when needed)."""
        if text is None:
            return None
        if self._plain_json and _TAG not in text:
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                pass
        return self._serializer.loads_or_undecodable(
            text, f"execution_pointers[{pointer_id!r}].{name}"
        )

    def _header_values(self, instance: WorkflowInstance) -> dict[str, Any]:
        """The stored form of an instance header (validated; nothing written yet)."""
        return {
            "p_workflow_definition_id": instance.workflow_definition_id,
            "p_version": instance.version,
            "p_description": instance.description,
            "p_reference": instance.reference,
            "p_idempotency_key": instance.idempotency_key,
            "p_status": _workflow_status(instance.status),
            "p_data": self._enc(instance.data, "data"),
            "p_next_execution": to_micros_opt(instance.next_execution, "instance.next_execution"),
            "p_create_time": to_micros(instance.create_time, "instance.create_time"),
            "p_complete_time": to_micros_opt(instance.complete_time, "instance.complete_time"),
        }

    def _pointer_values(self, workflow_id: str, p: ExecutionPointer) -> dict[str, Any]:
        """The stored form of one pointer (validated; nothing written yet).

        The common case -- UTC times, status enums, empty containers, values the
        serializer takes -- runs without building any error path; anything else goes
        through :meth:`_pointer_values_checked`, which names the field at fault."""
        d = p.__dict__ if type(p) is ExecutionPointer else None
        if d is None or type(d["status"]) is not PointerStatus:
            return self._pointer_values_checked(workflow_id, p)
        try:
            return {
                "p_workflow_id": workflow_id,
                "p_id": d["id"],
                "p_step_id": d["step_id"],
                "p_step_name": d["step_name"],
                "p_active": bool(d["active"]),
                "p_status": d["status"].value,
                "p_sleep_until": _micros_fast(d["sleep_until"]),
                "p_persistence_data": self._enc_fast(d["persistence_data"]),
                "p_start_time": _micros_fast(d["start_time"]),
                "p_end_time": _micros_fast(d["end_time"]),
                "p_event_name": d["event_name"],
                "p_event_key": d["event_key"],
                "p_event_published": bool(d["event_published"]),
                "p_event_data": self._enc_fast(d["event_data"]),
                "p_retry_count": d["retry_count"],
                "p_children": self._enc_fast(d["children"]),
                "p_context_item": self._enc_fast(d["context_item"]),
                "p_predecessor_id": d["predecessor_id"],
                "p_outcome": self._enc_fast(d["outcome"]),
                "p_scope": self._enc_fast(d["scope"]),
                "p_extension_attributes": self._enc_fast(d["extension_attributes"]),
            }
        except (_SlowPath, WfeError, TypeError, ValueError):
            return self._pointer_values_checked(workflow_id, p)

    def _enc_fast(self, value: Any) -> str | None:
        """:meth:`_enc` without an error path (raises for the caller to retry checked)."""
        if value is None:
            return None
        kind = type(value)
        if (kind is list or kind is dict) and not value:
            return "[]" if kind is list else "{}"
        return self._dumps(value, "")

    def _pointer_values_checked(self, workflow_id: str, p: ExecutionPointer) -> dict[str, Any]:
        """:meth:`_pointer_values` with every check and a message naming the field."""
        if not isinstance(p, ExecutionPointer):
            raise TypeError(f"execution pointers must be ExecutionPointer, not {type(p).__name__}")
        what = f"execution_pointers[{p.id!r}]"
        enc = self._enc
        return {
            "p_workflow_id": workflow_id,
            "p_id": p.id,
            "p_step_id": p.step_id,
            "p_step_name": p.step_name,
            "p_active": bool(p.active),
            "p_status": _pointer_status(p.status, what),
            "p_sleep_until": to_micros_opt(p.sleep_until, f"{what}.sleep_until"),
            "p_persistence_data": enc(p.persistence_data, f"{what}.persistence_data"),
            "p_start_time": to_micros_opt(p.start_time, f"{what}.start_time"),
            "p_end_time": to_micros_opt(p.end_time, f"{what}.end_time"),
            "p_event_name": p.event_name,
            "p_event_key": p.event_key,
            "p_event_published": bool(p.event_published),
            "p_event_data": enc(p.event_data, f"{what}.event_data"),
            "p_retry_count": p.retry_count,
            "p_children": enc(p.children, f"{what}.children"),
            "p_context_item": enc(p.context_item, f"{what}.context_item"),
            "p_predecessor_id": p.predecessor_id,
            "p_outcome": enc(p.outcome, f"{what}.outcome"),
            "p_scope": enc(p.scope, f"{what}.scope"),
            "p_extension_attributes": enc(p.extension_attributes, f"{what}.extension_attributes"),
        }

    def _load_pointer(self, row: Row) -> ExecutionPointer:
        """A fresh pointer from a row in :data:`POINTER_COLUMNS` order."""
        (
            _,
            pointer_id,
            step_id,
            step_name,
            active,
            status,
            sleep_until,
            persistence_data,
            start_time,
            end_time,
            event_name,
            event_key,
            event_published,
            event_data,
            retry_count,
            children,
            context_item,
            predecessor_id,
            outcome,
            scope,
            extension_attributes,
        ) = row
        dec = self._dec_field
        pointer = ExecutionPointer.__new__(ExecutionPointer)
        pointer.__dict__.update(
            id=pointer_id,
            step_id=step_id,
            step_name=step_name,
            active=bool(active),
            status=_PTR_STATUS[status],
            sleep_until=from_micros_opt(sleep_until),
            persistence_data=dec(persistence_data, pointer_id, "persistence_data"),
            start_time=from_micros_opt(start_time),
            end_time=from_micros_opt(end_time),
            event_name=event_name,
            event_key=event_key,
            event_published=bool(event_published),
            event_data=dec(event_data, pointer_id, "event_data"),
            retry_count=retry_count,
            children=dec(children, pointer_id, "children"),
            context_item=dec(context_item, pointer_id, "context_item"),
            predecessor_id=predecessor_id,
            outcome=dec(outcome, pointer_id, "outcome"),
            scope=dec(scope, pointer_id, "scope"),
            extension_attributes=dec(extension_attributes, pointer_id, "extension_attributes"),
        )
        return pointer

    def _load_instance(self, row: Row, pointer_rows: Iterable[Row]) -> WorkflowInstance:
        """A fresh instance (no pending changes) from a header row and its pointer rows."""
        (
            workflow_id,
            definition_id,
            version,
            description,
            reference,
            status,
            data,
            next_execution,
            create_time,
            complete_time,
            revision,
            control,
            idempotency_key,
        ) = row
        instance = WorkflowInstance(
            workflow_definition_id=definition_id,
            version=version,
            id=workflow_id,
            description=description,
            reference=reference,
            status=_WF_STATUS[status],
            data=self._dec(data, "data"),
            execution_pointers=PointerList(self._load_pointer(r) for r in pointer_rows),
            next_execution=from_micros_opt(next_execution),
            create_time=from_micros(create_time),
            complete_time=from_micros_opt(complete_time),
            revision=revision,
            control_request=control,
            idempotency_key=idempotency_key,
        )
        instance.mark_persisted()
        return instance

    def _subscription_values(
        self, subscriptions: Sequence[EventSubscription], what: str
    ) -> list[dict[str, Any]]:
        """Stored forms of new subscriptions, ids assigned (not yet written back)."""
        out: list[dict[str, Any]] = []
        for i, sub in enumerate(subscriptions):
            where = f"{what}[{i}]"
            if not isinstance(sub, EventSubscription):
                raise TypeError(f"{where} must be an EventSubscription, not {type(sub).__name__}")
            _check_subscription_text(sub, where)
            if sub.subscribe_as_of is None:
                raise TypeError(f"{where}.subscribe_as_of must be a datetime, not None")
            out.append(
                {
                    "p_id": sub.id or new_id(),
                    "p_workflow_id": sub.workflow_id,
                    "p_step_id": sub.step_id,
                    "p_execution_pointer_id": sub.execution_pointer_id,
                    "p_event_name": sub.event_name,
                    "p_event_key": sub.event_key,
                    "p_subscribe_as_of": to_micros(sub.subscribe_as_of, f"{where}.subscribe_as_of"),
                    "p_subscription_data": self._enc(
                        sub.subscription_data, f"{where}.subscription_data"
                    ),
                    "p_external_token": sub.external_token,
                    "p_external_worker_id": sub.external_worker_id,
                    "p_external_token_expiry": to_micros_opt(
                        sub.external_token_expiry, f"{where}.external_token_expiry"
                    ),
                }
            )
        return out

    def _load_subscription(self, row: Row) -> EventSubscription:
        (
            sub_id,
            workflow_id,
            step_id,
            pointer_id,
            event_name,
            event_key,
            subscribe_as_of,
            data,
            token,
            worker,
            expiry,
        ) = row
        return EventSubscription(
            workflow_id=workflow_id,
            step_id=step_id,
            execution_pointer_id=pointer_id,
            event_name=event_name,
            event_key=event_key,
            subscribe_as_of=from_micros(subscribe_as_of),
            subscription_data=self._dec(data, "subscription_data"),
            id=sub_id,
            external_token=token,
            external_worker_id=worker,
            external_token_expiry=from_micros_opt(expiry),
        )

    def _load_event(self, row: Row) -> Event:
        event_id, name, key, data, event_time, processed, set_aside, headers = row
        return Event(
            event_name=name,
            event_key=key,
            event_data=self._dec(data, "event_data"),
            event_time=from_micros(event_time),
            id=event_id,
            is_processed=bool(processed),
            set_aside=set_aside,
            headers=decode_headers(headers),
        )
