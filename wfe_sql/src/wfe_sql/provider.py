"""The persistence provider shared by every SQL dialect.

:class:`SqlPersistenceProvider` implements the whole
:class:`~wfe_core.persistence.PersistenceProvider` contract on a :class:`SqlDriver`. A
dialect package subclasses it only to build its driver (see :mod:`wfe_sql.driver`).

Hot path: every statement is compiled once per dialect (:mod:`wfe_sql.statements`), and
rows are converted by hand, so at run time SQLAlchemy does no work at all. A step
checkpoint (``persist_workflow``) is one write transaction: one ``UPDATE`` of the header
guarded by the revision, one batched upsert of only the changed pointers, and one batched
insert of the new subscriptions when there are any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import orjson
from wfe_core.capabilities import Capability
from wfe_core.errors import (
    CapabilityNotSupported,
    ConcurrencyError,
    ControlPending,
    EventNotFound,
    LeaseLost,
    ProviderUnavailable,
    SubscriptionNotFound,
    TokenMismatch,
    WfeError,
    WorkflowNotFound,
)
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    PointerList,
    PointerStatus,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
    utcnow,
)
from wfe_core.persistence import CommandHandler
from wfe_core.persistence import check_aware as _check_aware
from wfe_core.persistence import check_claim as _check_claim
from wfe_core.persistence import check_control_action as _check_control_action
from wfe_core.persistence import check_event_text as _check_event_text
from wfe_core.persistence import check_instance_text as _check_instance_text
from wfe_core.persistence import check_key as _check_key
from wfe_core.persistence import check_non_negative as _non_negative
from wfe_core.persistence import check_subscription_text as _check_subscription_text
from wfe_core.persistence import id_list as _id_list
from wfe_core.persistence import storable_key as _storable_key
from wfe_core.serialization import Serializer, default_serializer

from wfe_sql.driver import BatchAborted, IntegrityViolation, Op, Row, SqlDriver
from wfe_sql.statements import (
    ERROR_COLUMNS,
    EVENT_COLUMNS,
    HEADER_READ_COLUMNS,
    IN_CHUNK,
    POINTER_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    WORKFLOW_COLUMNS,
    ProviderStatements,
    in_args,
    padded,
)
from wfe_sql.times import EPOCH, from_micros, from_micros_opt, to_micros, to_micros_opt

if TYPE_CHECKING:
    from wfe_core.persistence import PersistenceProvider

__all__ = ["SqlPersistenceProvider"]

_log = logging.getLogger("wfe.sql")

_TAG = '"$wfe"'  # the key of every tagged value in the serializer's stored form
_SUPPORTED: frozenset[Capability] = frozenset(
    {Capability.SCHEDULED_COMMANDS, Capability.PURGE, Capability.DURABLE}
)
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
) -> dict[str, Any] | None:
    """The ``p_<filter>`` values of the ``query_workflows`` filters given, or None when
    a key filter cannot match anything (not a storable key)."""
    if any(f is not None and not _storable_key(f) for f in (definition_id, reference)):
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
    return values


def _pointer_status(value: Any, what: str) -> str:
    try:
        return _PTR_STATUS[value].value
    except (KeyError, TypeError):
        raise ValueError(f"{what}.status must be a PointerStatus, not {value!r}") from None


def _reason(reason: str) -> str:
    """Argument check: a set-aside reason is a non-empty string."""
    if not isinstance(reason, str) or not reason:
        raise ValueError(f"a set-aside reason must be a non-empty string, not {reason!r}")
    return reason


def _capability_set(capabilities: Iterable[Capability]) -> frozenset[Capability]:
    result: set[Capability] = set()
    for c in capabilities:
        try:
            result.add(Capability(c))
        except ValueError:
            raise ValueError(f"unknown capability {c!r}") from None
    return frozenset(result)


class SqlPersistenceProvider:
    """A :class:`~wfe_core.persistence.PersistenceProvider` on a :class:`SqlDriver`.

    Declares ``SCHEDULED_COMMANDS``, ``PURGE`` and ``DURABLE`` (pass ``capabilities``, a
    subset, to declare fewer: a dialect whose database can be private to the process,
    like SQLite's ``:memory:``, leaves ``DURABLE`` out). ``serializer`` writes and reads
    user values (default: the process-wide one); ``clock`` returns "now" (an aware
    datetime) for token expiry and command leases; ``command_lease`` is how many seconds
    a claimed scheduled command stays reserved for the processor that claimed it (a
    crashed processor's commands become due again after it).

    The schema is created or migrated on first use (``ensure_store_exists`` or any
    call). After :meth:`close` every call raises
    :class:`~wfe_core.errors.ProviderUnavailable`.
    """

    def __init__(
        self,
        driver: SqlDriver,
        *,
        serializer: Serializer | None = None,
        clock: Callable[[], datetime] = utcnow,
        capabilities: Iterable[Capability] | None = None,
        command_lease: float = 60.0,
    ) -> None:
        self._capabilities = _SUPPORTED if capabilities is None else _capability_set(capabilities)
        unsupported = self._capabilities - _SUPPORTED
        if unsupported:
            names = ", ".join(sorted(c.name for c in unsupported))
            raise ValueError(f"{type(self).__name__} cannot support {names}")
        if not command_lease > 0:
            raise ValueError(
                f"command_lease must be a positive number of seconds, not {command_lease!r}"
            )
        self.driver = driver
        self._serializer = serializer if serializer is not None else default_serializer
        self._dumps = self._serializer.dumps
        self._loads = self._serializer.loads
        self._plain_json = type(self._serializer) is Serializer
        self._clock = clock
        self._lease = timedelta(seconds=command_lease)
        self._stmts: ProviderStatements = driver.cached("wfe_sql.provider", ProviderStatements)
        self._attached = False
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.driver.name} ({state})>"

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        """``SCHEDULED_COMMANDS``, ``PURGE`` and ``DURABLE`` unless constructed with fewer."""
        return self._capabilities

    async def ensure_store_exists(self) -> None:
        """Create or migrate the schema (idempotent; safe from several processes at once)."""
        await self._ready()

    async def close(self) -> None:
        """Release this provider's hold on the connections; later calls raise
        ``ProviderUnavailable``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._attached:
            self._attached = False
            await self.driver.detach(self)

    async def __aenter__(self) -> Self:
        try:
            await self.ensure_store_exists()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ready(self) -> ProviderStatements:
        """Check the provider is open, attach to the driver and make sure of the schema."""
        if self._closed:
            raise ProviderUnavailable(f"{type(self).__name__} for {self.driver.name} is closed")
        driver = self.driver
        if not self._attached:
            driver.attach(self)
            self._attached = True
        await driver.ensure_schema()
        return self._stmts

    def _require(self, capability: Capability) -> None:
        if capability not in self._capabilities:
            raise CapabilityNotSupported(capability, self)

    # -- values ------------------------------------------------------------------------

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
        event_id, name, key, data, event_time, processed, set_aside = row
        return Event(
            event_name=name,
            event_key=key,
            event_data=self._dec(data, "event_data"),
            event_time=from_micros(event_time),
            id=event_id,
            is_processed=bool(processed),
            set_aside=set_aside,
        )

    def _now(self) -> int:
        return to_micros(self._clock(), "clock()")

    # -- workflows ---------------------------------------------------------------------

    async def create_workflow(
        self,
        instance: WorkflowInstance,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> str:
        """Insert a new instance (revision 1) with all its pointers; return its id
        (claimed by ``owner`` until ``lease_until`` when given)."""
        if not isinstance(instance, WorkflowInstance):
            raise TypeError(f"instance must be a WorkflowInstance, not {type(instance).__name__}")
        _check_instance_text(instance)
        if owner is not None:
            _check_claim(owner, lease_until)
        s = await self._ready()
        workflow_id = instance.id or new_id()
        header = self._header_values(instance)
        header["p_id"] = workflow_id
        header["p_revision"] = 1
        insert = s.insert_workflow
        if owner is not None and lease_until is not None:
            insert = s.insert_workflow_claimed
            header["p_owner"] = owner
            header["p_lease"] = to_micros(lease_until, "lease_until")
        header_args = insert.args(header)
        rows = []
        for ordinal, pointer in enumerate(instance.execution_pointers):
            values = self._pointer_values(workflow_id, pointer)
            values["p_ordinal"] = ordinal
            rows.append(s.insert_pointer.args(values))
        ops = [Op(insert.sql, header_args, expect=1)]
        if rows:
            ops.append(Op(s.insert_pointer.sql, rows=rows))
        try:
            await self.driver.write_batch(ops)
        except BatchAborted:
            raise ConcurrencyError(workflow_id, 0) from None
        except IntegrityViolation as exc:
            raise ValueError(
                f"workflow instance {workflow_id!r} has two execution pointers with one id: {exc}"
            ) from exc
        instance.id = workflow_id
        instance.revision = 1
        instance.mark_persisted()
        return workflow_id

    async def persist_workflow(
        self,
        instance: WorkflowInstance,
        subscriptions: Sequence[EventSubscription] = (),
        *,
        owner: str | None = None,
        apply_control: bool = False,
    ) -> None:
        """Save header, data and changed pointers plus new subscriptions, atomically
        (fenced by the claim: see ``WorkflowRepository``)."""
        originals = list(subscriptions)
        if not isinstance(instance, WorkflowInstance):
            raise TypeError(f"instance must be a WorkflowInstance, not {type(instance).__name__}")
        s = await self._ready()
        # Everything is converted (and so validated) before the transaction starts.
        workflow_id = instance.id
        header = self._header_values(instance)
        header["p_key_id"] = workflow_id
        header["p_key_revision"] = instance.revision
        now = self._now()
        header["p_now"] = now
        if owner is None:
            update = s.update_workflow
        elif instance.status in _FINISHED:  # the write that ends it drops the claim
            update = s.update_workflow_control_end if apply_control else s.update_workflow_owned_end
            header["p_owner"] = owner
        else:
            update = s.update_workflow_control if apply_control else s.update_workflow_owned
            header["p_owner"] = owner
        header_args = update.args(header)
        upsert = s.upsert_pointer.args
        pointer_rows = [
            upsert(self._pointer_values(workflow_id, p)) for p in instance.changed_pointers()
        ]
        new_subs = self._subscription_values(originals, "subscriptions")
        sub_rows = [s.insert_subscription.args(v) for v in new_subs]
        # One transaction, one round trip: the guarded header UPDATE (a stale revision
        # or unknown id matches no row and rolls the whole batch back), the upsert of the
        # changed pointers, the new subscriptions.
        ops = [Op(update.sql, header_args, expect=1)]
        if pointer_rows:
            ops.append(Op(s.upsert_pointer.sql, rows=pointer_rows))
        if sub_rows:
            ops.append(Op(s.insert_subscription.sql, rows=sub_rows))
        try:
            await self.driver.write_batch(ops)
        except BatchAborted:
            raise await self._refused(workflow_id, instance.revision, owner, now) from None
        except IntegrityViolation as exc:
            raise ValueError(f"subscriptions: a subscription id already exists ({exc})") from exc
        for original, values in zip(originals, new_subs, strict=True):
            original.id = values["p_id"]
        instance.revision += 1
        instance.mark_persisted()

    async def _refused(
        self, workflow_id: str, revision: int, owner: str | None, now: int
    ) -> Exception:
        """The error for a refused header write: which guard did not hold."""
        s = await self._ready()
        row = await self.driver.fetchone(
            s.workflow_fence.sql, s.workflow_fence.args({"p_key_id": workflow_id})
        )
        if row is None:
            return WorkflowNotFound(workflow_id)
        stored_revision, holder, lease, control = row
        if stored_revision != revision:
            return ConcurrencyError(workflow_id, revision)
        live = holder is not None and lease is not None and lease > now
        if owner is None or not live or holder != owner:
            return LeaseLost(workflow_id, owner)
        return ControlPending(workflow_id, control)

    async def claim_workflow(self, workflow_id: str, owner: str, lease_until: datetime) -> bool:
        """Take or renew ``owner``'s claim unless another owner holds a live one."""
        _check_claim(owner, lease_until)
        lease = to_micros(lease_until, "lease_until")
        s = await self._ready()
        stmt = s.claim_workflow
        won = await self.driver.execute(
            stmt.sql,
            stmt.args(
                {"p_key_id": workflow_id, "p_owner": owner, "p_lease": lease, "p_now": self._now()}
            ),
            durable=False,
        )
        if won:
            return True
        if await self.driver.fetchone(s.workflow_exists.sql, (workflow_id,)) is None:
            raise WorkflowNotFound(workflow_id)
        return False

    async def release_workflow(self, workflow_id: str, owner: str) -> None:
        """Drop ``owner``'s claim (a no-op when it does not hold it)."""
        s = await self._ready()
        stmt = s.release_workflow
        await self.driver.execute(
            stmt.sql, stmt.args({"p_key_id": workflow_id, "p_owner": owner}), durable=False
        )

    async def request_control(self, workflow_id: str, action: str) -> None:
        """Record a pending control request (a pending terminate is kept)."""
        _check_control_action(action)
        s = await self._ready()
        stmt = s.request_control
        if await self.driver.execute(
            stmt.sql, stmt.args({"p_key_id": workflow_id, "p_action": action})
        ):
            return
        if await self.driver.fetchone(s.workflow_exists.sql, (workflow_id,)) is None:
            raise WorkflowNotFound(workflow_id)

    async def get_pending_controls(
        self, workflow_ids: Iterable[str] | None = None, as_at: datetime | None = None
    ) -> dict[str, str]:
        """Pending control requests (see ``WorkflowRepository.get_pending_controls``)."""
        s = await self._ready()
        out: dict[str, str] = {}
        if workflow_ids is not None:
            ids = list(dict.fromkeys(_id_list(workflow_ids, "workflow_ids")))
            for chunk in _chunks(ids):
                stmt = s.controls_in(len(chunk))
                for row in await self.driver.fetchall(stmt.sql, chunk):
                    out[row[0]] = row[1]
            return out
        now = self._now() if as_at is None else to_micros(as_at, "as_at")
        stmt = s.unclaimed_controls
        for row in await self.driver.fetchall(stmt.sql, stmt.args({"p_now": now})):
            out[row[0]] = row[1]
        return out

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Return a copy of the instance, or raise ``WorkflowNotFound``."""
        s = await self._ready()
        # One statement: the header row first, then the pointer rows (see statements).
        rows = await self.driver.fetchall(
            s.select_instance.sql, s.select_instance.args({"p_key_id": workflow_id})
        )
        if not rows or rows[0][0] != 0:
            raise WorkflowNotFound(workflow_id)
        split = 2 + _HEADER_WIDTH
        return self._load_instance(rows[0][2:split], [row[split:] for row in rows[1:]])

    async def _load_many(self, ids: list[str]) -> dict[str, WorkflowInstance]:
        """The instances found among ``ids`` (distinct), read in one snapshot."""
        s = await self._ready()
        headers: dict[str, Row] = {}
        pointers: dict[str, list[Row]] = {}
        async with self.driver.read() as r:
            for chunk in _chunks(ids):
                for row in await r.fetchall(s.workflows_in(len(chunk)).sql, chunk):
                    headers[row[0]] = row
            found = [i for i in ids if i in headers]
            for chunk in _chunks(found):
                for row in await r.fetchall(s.pointers_in(len(chunk)).sql, chunk):
                    pointers.setdefault(row[0], []).append(row)
        return {i: self._load_instance(headers[i], pointers.get(i, ())) for i in found}

    async def get_workflow_instances(self, workflow_ids: Iterable[str]) -> list[WorkflowInstance]:
        """Copies of the instances found, in the order asked (each once)."""
        ids = list(dict.fromkeys(_id_list(workflow_ids, "workflow_ids")))
        if not ids:
            await self._ready()
            return []
        loaded = await self._load_many(ids)
        return [loaded[i] for i in ids if i in loaded]

    async def get_runnable_instances(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of RUNNABLE instances due at ``as_at``, earliest ``next_execution`` first."""
        at = to_micros(as_at, "as_at")
        _non_negative(limit, "limit")
        s = await self._ready()
        rows = await self.driver.fetchall(
            s.runnable_workflows.sql, s.runnable_workflows.args({"p_as_at": at, "p_limit": limit})
        )
        return [r[0] for r in rows]

    async def query_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        skip: int = 0,
        take: int = 100,
        newest_first: bool = False,
    ) -> list[WorkflowInstance]:
        """Matching instances, oldest ``create_time`` first (ties by id), paged;
        ``newest_first`` reverses the order."""
        _check_aware(created_from, "created_from")
        _check_aware(created_to, "created_to")
        _non_negative(skip, "skip")
        _non_negative(take, "take")
        s = await self._ready()
        values = _workflow_filter_values(status, definition_id, reference, created_from, created_to)
        if values is None or take == 0:
            return []
        stmt = s.query_workflows(tuple(k[2:] for k in values), newest_first)
        values["p_take"] = take
        values["p_skip"] = skip
        pointers: dict[str, list[Row]] = {}
        async with self.driver.read() as r:
            headers = await r.fetchall(stmt.sql, stmt.args(values))
            ids = [h[0] for h in headers]
            for chunk in _chunks(ids):
                for row in await r.fetchall(s.pointers_in(len(chunk)).sql, chunk):
                    pointers.setdefault(row[0], []).append(row)
        return [self._load_instance(h, pointers.get(h[0], ())) for h in headers]

    async def count_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> int:
        """How many instances match the filters of :meth:`query_workflows`."""
        _check_aware(created_from, "created_from")
        _check_aware(created_to, "created_to")
        s = await self._ready()
        values = _workflow_filter_values(status, definition_id, reference, created_from, created_to)
        if values is None:
            return 0
        stmt = s.count_workflows(tuple(k[2:] for k in values))
        row = await self.driver.fetchone(stmt.sql, stmt.args(values))
        return int(row[0]) if row is not None else 0

    async def purge_workflows(self, status: WorkflowStatus, older_than: datetime) -> int:
        """Delete finished instances completed before ``older_than`` with their pointers,
        subscriptions and errors; return the count."""
        self._require(Capability.PURGE)
        if status not in _FINISHED:
            raise ValueError(f"purge_workflows only purges COMPLETE or TERMINATED, not {status!r}")
        cutoff = to_micros(older_than, "older_than")
        s = await self._ready()
        values = {"p_status": _workflow_status(status), "p_older_than": cutoff}
        ops = [Op(stmt.sql, stmt.args(values)) for stmt in (*s.purge, s.purge_workflows)]
        counts = await self.driver.write_batch(ops)
        return int(counts[-1])

    # -- subscriptions -----------------------------------------------------------------

    async def create_subscription(self, subscription: EventSubscription) -> str:
        """Insert a subscription; return its id (assigned when empty, written back)."""
        s = await self._ready()
        (values,) = self._subscription_values([subscription], "subscription")
        try:
            await self.driver.execute(s.insert_subscription.sql, s.insert_subscription.args(values))
        except IntegrityViolation as exc:
            raise ValueError(
                f"subscription: a subscription with id {values['p_id']!r} already exists"
            ) from exc
        subscription.id = values["p_id"]
        return subscription.id

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """Return a copy of a live subscription, or raise ``SubscriptionNotFound``."""
        s = await self._ready()
        row = await self.driver.fetchone(s.select_subscription.sql, (subscription_id,))
        if row is None:
            raise SubscriptionNotFound(subscription_id)
        return self._load_subscription(row)

    async def get_subscriptions(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> list[EventSubscription]:
        """Live subscriptions on this name and key as of ``as_of``, oldest first."""
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        if not (_storable_key(event_name) and _storable_key(event_key)):
            return []
        rows = await self.driver.fetchall(s.topic_subscriptions.sql, (event_name, event_key, at))
        return [self._load_subscription(r) for r in rows]

    async def get_first_open_subscription(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> EventSubscription | None:
        """The oldest matching subscription without a live token, or None."""
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        if not (_storable_key(event_name) and _storable_key(event_key)):
            return None
        stmt = s.first_open_subscription
        row = await self.driver.fetchone(
            stmt.sql,
            stmt.args(
                {
                    "p_event_name": event_name,
                    "p_event_key": event_key,
                    "p_as_of": at,
                    "p_now": self._now(),
                }
            ),
        )
        return None if row is None else self._load_subscription(row)

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Delete a subscription, or raise ``SubscriptionNotFound``."""
        s = await self._ready()
        if await self.driver.execute(s.delete_subscription.sql, (subscription_id,)) == 0:
            raise SubscriptionNotFound(subscription_id)

    async def terminate_subscriptions(
        self, workflow_id: str, pointer_ids: Iterable[str] | None = None
    ) -> int:
        """Delete a workflow's subscriptions (or those of some pointers); return the count."""
        wanted = (
            None
            if pointer_ids is None
            else list(dict.fromkeys(_id_list(pointer_ids, "pointer_ids")))
        )
        s = await self._ready()
        if wanted is None:
            return await self.driver.execute(s.delete_workflow_subscriptions.sql, (workflow_id,))
        if not wanted:
            return 0
        ops = []
        for chunk in _chunks(wanted):
            stmt = s.delete_pointer_subscriptions(len(chunk))
            ops.append(Op(stmt.sql, stmt.args({"p_workflow_id": workflow_id, **in_args(chunk)})))
        return sum(await self.driver.write_batch(ops))

    async def set_subscription_token(
        self, subscription_id: str, token: str, worker_id: str, expiry: datetime
    ) -> bool:
        """Claim the subscription if no live token is held; return whether we won."""
        if expiry is None:
            raise TypeError("expiry must be a datetime, not None")
        until = to_micros(expiry, "expiry")
        _check_key(token, "token")
        _check_key(worker_id, "worker_id")
        s = await self._ready()
        stmt = s.set_token
        won = await self.driver.execute(
            stmt.sql,
            stmt.args(
                {
                    "p_token": token,
                    "p_worker": worker_id,
                    "p_expiry": until,
                    "p_key_id": subscription_id,
                    "p_now": self._now(),
                }
            ),
        )
        if won:
            return True
        if await self.driver.fetchone(s.subscription_exists.sql, (subscription_id,)) is None:
            raise SubscriptionNotFound(subscription_id)
        return False

    async def clear_subscription_token(self, subscription_id: str, token: str) -> None:
        """Release the claim held with ``token``; ``TokenMismatch`` for any other token."""
        s = await self._ready()
        stmt = s.clear_token
        if await self.driver.execute(
            stmt.sql, stmt.args({"p_key_id": subscription_id, "p_token": token})
        ):
            return
        if await self.driver.fetchone(s.subscription_exists.sql, (subscription_id,)) is None:
            raise SubscriptionNotFound(subscription_id)
        raise TokenMismatch(subscription_id)

    # -- events ------------------------------------------------------------------------

    async def create_event(self, event: Event) -> str:
        """Insert an event; return its id (assigned when empty, written back)."""
        if not isinstance(event, Event):
            raise TypeError(f"event must be an Event, not {type(event).__name__}")
        _check_event_text(event)
        if event.event_time is None:
            raise TypeError("event.event_time must be a datetime, not None")
        event_time = to_micros(event.event_time, "event.event_time")
        s = await self._ready()
        event_id = event.id or new_id()
        stmt = s.insert_event
        args = stmt.args(
            {
                "p_id": event_id,
                "p_event_name": event.event_name,
                "p_event_key": event.event_key,
                "p_event_data": self._enc(event.event_data, "event_data"),
                "p_event_time": event_time,
                "p_is_processed": bool(event.is_processed) or event.set_aside is not None,
                "p_set_aside": None if event.set_aside is None else _reason(event.set_aside),
            }
        )
        try:
            await self.driver.execute(stmt.sql, args)
        except IntegrityViolation as exc:
            raise ValueError(f"an event with id {event_id!r} already exists") from exc
        event.id = event_id
        return event_id

    async def get_event(self, event_id: str) -> Event:
        """Return a copy of the event, or raise ``EventNotFound``."""
        s = await self._ready()
        row = await self.driver.fetchone(s.select_event.sql, (event_id,))
        if row is None:
            raise EventNotFound(event_id)
        return self._load_event(row)

    async def get_runnable_events(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of unprocessed events with ``event_time <= as_at``, oldest first."""
        at = to_micros(as_at, "as_at")
        _non_negative(limit, "limit")
        s = await self._ready()
        stmt = s.runnable_events
        rows = await self.driver.fetchall(stmt.sql, stmt.args({"p_as_at": at, "p_limit": limit}))
        return [r[0] for r in rows]

    async def get_events(self, event_name: str, event_key: str, as_of: datetime) -> list[str]:
        """Ids of events on this name and key with ``event_time >= as_of``, oldest first."""
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        if not (_storable_key(event_name) and _storable_key(event_key)):
            return []
        rows = await self.driver.fetchall(s.topic_events.sql, (event_name, event_key, at))
        return [r[0] for r in rows]

    async def _mark_event(self, event_id: str, processed: bool) -> None:
        s = await self._ready()
        stmt = s.mark_event
        if not await self.driver.execute(
            stmt.sql, stmt.args({"p_flag": processed, "p_key_id": event_id})
        ):
            raise EventNotFound(event_id)

    async def mark_event_processed(self, event_id: str) -> None:
        """Set ``is_processed``, or raise ``EventNotFound``."""
        await self._mark_event(event_id, True)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Clear ``is_processed`` (a set-aside event stays processed), or raise
        ``EventNotFound``."""
        await self._mark_event(event_id, False)

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        """Mark the event processed for good with ``reason``; True when this call did."""
        values = {"p_key_id": event_id, "p_flag": True, "p_reason": _reason(reason)}
        s = await self._ready()
        stmt = s.set_aside_event
        if await self.driver.execute(stmt.sql, stmt.args(values)):
            return True
        if await self.driver.fetchone(s.event_exists.sql, (event_id,)) is None:
            raise EventNotFound(event_id)
        return False

    # -- scheduled commands ------------------------------------------------------------

    async def schedule_command(self, command: ScheduledCommand) -> None:
        """Store a command once per ``(command_name, data)``, keeping the earlier time."""
        self._require(Capability.SCHEDULED_COMMANDS)
        if not isinstance(command, ScheduledCommand):
            raise TypeError(f"command must be a ScheduledCommand, not {type(command).__name__}")
        _check_key(command.data, "command.data")
        if command.execute_time is None:
            raise TypeError("command.execute_time must be a datetime, not None")
        at = to_micros(command.execute_time, "command.execute_time")
        s = await self._ready()
        stmt = s.schedule_command
        await self.driver.execute(
            stmt.sql,
            stmt.args(
                {
                    "p_command_name": command.command_name,
                    "p_data": command.data,
                    "p_execute_time": at,
                    "p_now": self._now(),
                }
            ),
        )

    async def process_commands(self, as_of: datetime, handler: CommandHandler) -> int:
        """Claim every due command (a lease of ``command_lease`` seconds), hand each to
        ``handler``; delete it when the handler returns, release it when it raises;
        return the successes."""
        self._require(Capability.SCHEDULED_COMMANDS)
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        token = new_id()
        now = self._clock()
        claim = s.claim_commands
        rows = await self.driver.execute_returning(
            claim.sql,
            claim.args(
                {
                    "p_token": token,
                    "p_until": to_micros(now + self._lease, "clock()"),
                    "p_as_of": at,
                    "p_now": to_micros(now, "clock()"),
                }
            ),
        )
        claimed = sorted((r[2], r[0], r[1]) for r in rows)
        handled = 0
        for n, (execute_time, name, data) in enumerate(claimed):
            if self._closed:
                break
            try:
                await handler(ScheduledCommand(name, data, from_micros(execute_time)))
            except Exception:
                _log.warning("scheduled command %s(%r) failed; kept", name, data, exc_info=True)
                await self._release_commands(claimed[n : n + 1], token)
            except BaseException:
                await self._release_commands(claimed[n:], token, shielded=True)
                raise
            else:
                stmt = s.delete_command
                await self.driver.execute(
                    stmt.sql,
                    stmt.args({"p_command_name": name, "p_data": data, "p_token": token}),
                )
                handled += 1
        return handled

    async def _release_commands(
        self, claimed: Sequence[tuple[int, str, str]], token: str, *, shielded: bool = False
    ) -> None:
        """Give claimed commands back (best effort when ``shielded``: their lease expires
        anyway)."""
        if not claimed:
            return
        stmt = self._stmts.release_command

        async def release() -> None:
            await self.driver.write_batch(
                [
                    Op(
                        stmt.sql,
                        stmt.args({"p_command_name": name, "p_data": data, "p_token": token}),
                    )
                    for _, name, data in claimed
                ]
            )

        if not shielded:
            await release()
            return
        with contextlib.suppress(BaseException):
            await asyncio.shield(release())

    # -- errors ------------------------------------------------------------------------

    async def persist_errors(self, errors: Iterable[ExecutionError]) -> None:
        """Append errors to the log (all or none)."""
        s = await self._ready()
        stmt = s.insert_error
        rows = []
        for i, error in enumerate(errors):
            if not isinstance(error, ExecutionError):
                raise TypeError(
                    f"errors[{i}] must be an ExecutionError, not {type(error).__name__}"
                )
            if error.error_time is None:
                raise TypeError(f"errors[{i}].error_time must be a datetime, not None")
            rows.append(
                stmt.args(
                    {
                        "p_id": error.id,
                        "p_workflow_id": error.workflow_id,
                        "p_execution_pointer_id": error.execution_pointer_id,
                        "p_error_time": to_micros(error.error_time, f"errors[{i}].error_time"),
                        "p_message": error.message,
                        "p_error_type": error.error_type,
                        "p_traceback": error.traceback,
                    }
                )
            )
        if not rows:
            return
        await self.driver.write_batch([Op(stmt.sql, rows=rows)])

    async def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """A workflow's errors, oldest first (ties in the order persisted)."""
        s = await self._ready()
        rows = await self.driver.fetchall(s.select_errors.sql, (workflow_id,))
        return [
            ExecutionError(
                workflow_id=wf,
                execution_pointer_id=pointer_id,
                message=message,
                error_type=error_type,
                traceback=tb,
                error_time=from_micros(error_time),
                id=error_id,
            )
            for error_id, wf, pointer_id, error_time, message, error_type, tb in rows
        ]


if TYPE_CHECKING:

    def _conforms(p: SqlPersistenceProvider) -> PersistenceProvider:
        return p  # mypy checks that the class implements the whole protocol
