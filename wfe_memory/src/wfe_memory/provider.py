"""The in-memory persistence provider: the reference implementation of the contract.

Everything lives in Python dicts inside one provider object, so nothing survives the
process. It stores what a database would: user values (workflow data, event data,
subscription data, the data fields of pointers) are kept in their serialized form
(:meth:`wfe_core.serialization.Serializer.to_primitive`) and rebuilt on every read, so
a value that a real store would refuse is refused here too, types come back through
the same allowlist, and no caller ever shares an object with the store. Times are
stored in UTC. Revisions are checked like a database would, and each method's
check-and-set happens without an ``await`` in between, so the provider is safe under
any number of concurrent asyncio tasks on one event loop.

Namespaces: a memory "database" is a provider object and its siblings, the providers
:meth:`MemoryPersistenceProvider.in_namespace` returns for other namespaces. Each
namespace keeps its data in a partition of its own (its own provider object and dicts);
siblings share only their registry, serializer, clock and capabilities.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from wfe_core.capabilities import Capability
from wfe_core.errors import (
    ConcurrencyError,
    ControlPending,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    EventNotFound,
    LeaseLost,
    ProviderUnavailable,
    SubscriptionNotFound,
    TokenMismatch,
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
from wfe_core.namespaces import check_namespace, resolve_namespace
from wfe_core.persistence import Claim, CommandHandler
from wfe_core.persistence import check_aware as _check_aware
from wfe_core.persistence import check_claim as _check_claim
from wfe_core.persistence import check_control_action as _check_control_action
from wfe_core.persistence import check_event_text as _check_event_text
from wfe_core.persistence import check_instance_text as _check_instance_text
from wfe_core.persistence import check_key as _check_key
from wfe_core.persistence import check_non_negative as _non_negative
from wfe_core.persistence import check_subscription_text as _check_subscription_text
from wfe_core.persistence import id_list as _id_list
from wfe_core.serialization import JSONValue, Serializer, default_serializer
from wfe_core.telemetry import check_headers

from wfe_memory.definitions import MemoryDefinitionStore

if TYPE_CHECKING:
    from wfe_core.persistence import PersistenceProvider

__all__ = ["MemoryPersistenceProvider"]

_log = logging.getLogger("wfe.memory")

_FINISHED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
_ZERO = timedelta(0)

# Model fields holding user values: stored serialized, rebuilt on every read.
_POINTER_DATA_FIELDS = (
    "persistence_data",
    "event_data",
    "context_item",
    "outcome",
    "extension_attributes",
)
_POINTER_TIME_FIELDS = ("sleep_until", "start_time", "end_time")
_POINTER_OTHER_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in fields(ExecutionPointer)
    if f.name not in _POINTER_DATA_FIELDS and f.name not in _POINTER_TIME_FIELDS
)
_INSTANCE_TIME_FIELDS = ("create_time", "next_execution", "complete_time")
_INSTANCE_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in fields(WorkflowInstance)
    if f.name not in ("execution_pointers", "control_request")
)
# Immutable JSON scalars: their stored form is themselves.
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
# Values of the model's own fields that need no copy (scalars and its status enums).
_IMMUTABLE: frozenset[type] = _SCALARS | {PointerStatus, WorkflowStatus}


def _copy_plain(value: Any) -> Any:
    """A copy of a model field that is not user data (ids, counters, lists of ids)."""
    kind = type(value)
    if kind in _SCALARS or isinstance(value, enum.Enum):
        return value
    if kind is list and all(type(item) is str for item in value):
        return list(value)
    return copy.deepcopy(value)


def _utc(value: datetime | None, what: str) -> datetime | None:
    """Check that ``value`` is aware and return the same instant in UTC."""
    if value is None or (type(value) is datetime and value.tzinfo is UTC):
        return value  # the common case, checked first
    _check_aware(value, what)
    return value.astimezone(UTC)


def _utc_field(value: datetime | None, what: str, name: str) -> datetime | None:
    """:func:`_utc` for a model field; the error's path is built only when needed."""
    if value is None or (type(value) is datetime and value.tzinfo is UTC):
        return value
    return _utc(value, f"{what}.{name}")


def _required_utc(value: datetime, what: str) -> datetime:
    if value is None:
        raise TypeError(f"{what} must be a datetime, not None")
    result = _utc(value, what)
    assert result is not None
    return result


def _token_live(sub: EventSubscription, now: datetime) -> bool:
    """Whether a claim is held: a token whose expiry (if any) is after ``now``."""
    if sub.external_token is None:
        return False
    return sub.external_token_expiry is None or sub.external_token_expiry > now


@dataclass(slots=True)
class _StoredInstance:
    """An instance as stored: the header (``data`` serialized, no pointers) and the
    pointers (data fields serialized) by id, in creation order."""

    header: WorkflowInstance
    pointers: dict[str, ExecutionPointer]
    seq: int
    owner: str | None = None
    lease_until: datetime | None = None
    control: str | None = None

    def claimed(self, now: datetime) -> bool:
        """Whether a claim is live at ``now``."""
        return self.owner is not None and self.lease_until is not None and self.lease_until > now


@dataclass(slots=True)
class _StoredEvent:
    event: Event  # event_data serialized
    seq: int


@dataclass(slots=True)
class _StoredSubscription:
    subscription: EventSubscription  # subscription_data serialized
    seq: int


class MemoryPersistenceProvider(MemoryDefinitionStore):
    """An in-memory :class:`~wfe_core.persistence.PersistenceProvider` (not durable).

    Declares ``SCHEDULED_COMMANDS`` and ``PURGE``; pass ``capabilities`` (a subset) to
    pretend to support fewer, e.g. to test how a host adapts: using an undeclared one
    raises :class:`~wfe_core.errors.CapabilityNotSupported`. ``serializer`` stores and
    rebuilds user values (default: the process-wide one). ``clock`` returns "now" (an
    aware UTC datetime) for token-expiry checks.

    ``namespace`` (:mod:`wfe_core.namespaces`; default: the ``WFE_NAMESPACE`` environment
    variable, else ``"default"``) names the partition this provider holds. The in-process
    "database" is this provider and its siblings: :meth:`in_namespace` returns the provider
    of another namespace of it (the same object every time), whose data is kept apart
    from this one's entirely.

    After :meth:`close` every call raises
    :class:`~wfe_core.errors.ProviderUnavailable` and the data of this namespace is
    dropped (its siblings keep theirs). Usable as ``async with``; it is a
    :class:`wfe_core.ProviderBase`.
    """

    supported_capabilities = frozenset({Capability.SCHEDULED_COMMANDS, Capability.PURGE})

    def __init__(
        self,
        *,
        capabilities: Iterable[Capability] | None = None,
        serializer: Serializer | None = None,
        clock: Callable[[], datetime] = utcnow,
        name: str = "",
        namespace: str | None = None,
    ) -> None:
        super().__init__(capabilities=capabilities)
        self.namespace = resolve_namespace(namespace)
        self._serializer = serializer if serializer is not None else default_serializer
        self._clock = clock
        self.name = name
        # The namespaces of this in-process database, shared by every sibling.
        self._siblings: dict[str, MemoryPersistenceProvider] = {self.namespace: self}
        self._seq = itertools.count()
        self._instances: dict[str, _StoredInstance] = {}
        # (workflow_definition_id, idempotency_key) -> instance id
        self._by_idempotency_key: dict[tuple[str, str], str] = {}
        self._subscriptions: dict[str, _StoredSubscription] = {}
        self._subs_by_topic: dict[tuple[str, str], dict[str, None]] = {}
        self._subs_by_workflow: dict[str, dict[str, None]] = {}
        self._events: dict[str, _StoredEvent] = {}
        self._events_by_topic: dict[tuple[str, str], dict[str, None]] = {}
        self._unprocessed: dict[str, None] = {}
        self._commands: dict[tuple[str, str], datetime] = {}
        self._in_flight: dict[tuple[str, str], datetime] = {}
        self._errors: dict[str, list[ExecutionError]] = {}

    @property
    def store_name(self) -> str:
        """The provider's ``name`` (quoted) for ``repr``; empty when it has none."""
        return repr(self.name) if self.name else ""

    def describe_state(self) -> str:
        """How many instances are stored (shown by ``repr``)."""
        return f"{len(self._instances)} instances"

    # -- namespaces --------------------------------------------------------------------

    def in_namespace(self, namespace: str) -> MemoryPersistenceProvider:
        """The provider of ``namespace`` in this provider's in-process database.

        The same object is returned for the same namespace as long as it is open
        (``p.in_namespace(p.namespace) is p``); a new, empty one once it was closed.
        Siblings share the serializer, clock, capabilities and name, never data.
        ``ProviderUnavailable`` when this provider is closed; ``TypeError`` /
        ``ValueError`` for an invalid namespace name.
        """
        namespace = check_namespace(namespace)
        if self._closed:
            raise ProviderUnavailable(
                "provider is closed; call in_namespace() on an open provider of the database"
            )
        sibling = self._siblings.get(namespace)
        if sibling is None or sibling._closed:
            sibling = self._new_sibling(namespace)
            sibling._siblings = self._siblings
            self._siblings[namespace] = sibling
        return sibling

    def _new_sibling(self, namespace: str) -> MemoryPersistenceProvider:
        """A new provider like this one for ``namespace`` (a subclass whose constructor
        takes other arguments overrides this)."""
        return type(self)(
            capabilities=self.capabilities,
            serializer=self._serializer,
            clock=self._clock,
            name=self.name,
            namespace=namespace,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def ensure_store_exists(self) -> None:
        """Nothing to create; raises only when the provider is closed."""
        await self._enter()

    async def close(self) -> None:
        """Drop this namespace's data; later calls raise ``ProviderUnavailable``.
        Idempotent; the other namespaces of the database stay open."""
        if self._closed:
            return
        await super().close()
        if self._siblings.get(self.namespace) is self:
            del self._siblings[self.namespace]
        for table in (
            self._instances,
            self._by_idempotency_key,
            self._subscriptions,
            self._subs_by_topic,
            self._subs_by_workflow,
            self._events,
            self._events_by_topic,
            self._unprocessed,
            self._commands,
            self._in_flight,
            self._errors,
        ):
            table.clear()

    async def _enter(self) -> None:
        # Yield once, like real I/O would, so busy loops over the provider let other
        # tasks run. Everything a method does after this runs without another await.
        await asyncio.sleep(0)
        if self._closed:
            raise ProviderUnavailable("provider is closed")

    # -- stored form (the hooks a test may count) --------------------------------------

    def _encode(self, value: Any, what: str) -> JSONValue:
        """The stored form of a user value; ``SerializationError`` naming ``what`` when
        it cannot be stored faithfully."""
        if type(value) in _SCALARS:
            return value  # type: ignore[no-any-return]
        return self._serializer.to_primitive(value, what)

    def _decode(self, stored: JSONValue, what: str) -> Any:
        """A fresh object rebuilt from a stored form; one that cannot be rebuilt in this
        process comes back as an :class:`~wfe_core.serialization.Undecodable` (which
        encodes back to the same stored form), never an error."""
        kind = type(stored)
        if kind in _SCALARS:
            return stored
        if not stored:  # an empty list or dict
            return [] if kind is list else {}
        return self._serializer.from_primitive_or_undecodable(stored, what)

    def _store_pointer(self, pointer: ExecutionPointer, what: str) -> ExecutionPointer:
        """The stored form of one pointer (validated; nothing shared with the caller's)."""
        if not isinstance(pointer, ExecutionPointer):
            raise TypeError(f"{what} must be an ExecutionPointer, not {type(pointer).__name__}")
        stored = ExecutionPointer.__new__(ExecutionPointer)
        target = stored.__dict__
        source = pointer.__dict__
        for name in _POINTER_DATA_FIELDS:
            value = source[name]
            kind = type(value)
            if kind in _SCALARS:
                target[name] = value
            elif (kind is dict or kind is list) and not value:
                target[name] = kind()
            else:
                target[name] = self._encode(value, f"{what}.{name}")
        for name in _POINTER_TIME_FIELDS:
            target[name] = _utc_field(source[name], what, name)
        for name in _POINTER_OTHER_FIELDS:
            value = source[name]
            if type(value) in _IMMUTABLE:
                target[name] = value
            else:
                target[name] = _copy_plain(value)
        return stored

    def _load_pointer(self, stored: ExecutionPointer) -> ExecutionPointer:
        """A fresh pointer rebuilt from its stored form."""
        pointer = ExecutionPointer.__new__(ExecutionPointer)
        target = pointer.__dict__
        source = stored.__dict__
        for name in _POINTER_DATA_FIELDS:
            value = source[name]
            if type(value) in _SCALARS:
                target[name] = value
            else:
                target[name] = self._decode(value, f"execution_pointers[{stored.id!r}].{name}")
        for name in _POINTER_TIME_FIELDS:
            target[name] = source[name]
        for name in _POINTER_OTHER_FIELDS:
            target[name] = _copy_plain(source[name])
        return pointer

    def _store_header(self, instance: WorkflowInstance) -> WorkflowInstance:
        """The stored form of the instance header (data serialized, no pointers)."""
        if not isinstance(instance, WorkflowInstance):
            raise TypeError(f"instance must be a WorkflowInstance, not {type(instance).__name__}")
        header = WorkflowInstance.__new__(WorkflowInstance)
        values = header.__dict__
        source = instance.__dict__
        for name in _INSTANCE_FIELDS:
            values[name] = source[name]
        for name in _INSTANCE_TIME_FIELDS:
            values[name] = _utc_field(values[name], "instance", name)
        values["data"] = self._encode(instance.data, "data")
        values["execution_pointers"] = PointerList()
        return header

    def _load(self, stored: _StoredInstance) -> WorkflowInstance:
        values = {name: getattr(stored.header, name) for name in _INSTANCE_FIELDS}
        values["data"] = self._decode(stored.header.data, "data")
        values["control_request"] = stored.control
        instance = WorkflowInstance(**values)
        instance.execution_pointers = PointerList(
            self._load_pointer(p) for p in stored.pointers.values()
        )
        instance.mark_persisted()
        return instance

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
        if owner is not None:
            _check_claim(owner, lease_until)
            lease_until = _required_utc(lease_until, "lease_until")  # type: ignore[arg-type]
        await self._enter()
        header = self._store_header(instance)
        _check_instance_text(instance)
        workflow_id = instance.id or new_id()
        if workflow_id in self._instances:
            raise ConcurrencyError(workflow_id, 0)
        key = header.idempotency_key
        if key is not None:
            held_by = self._by_idempotency_key.get((header.workflow_definition_id, key))
            if held_by is not None:
                raise DuplicateIdempotencyKey(header.workflow_definition_id, key, held_by)
        header.id = workflow_id
        header.revision = 1
        pointers: dict[str, ExecutionPointer] = {}
        for pointer in instance.execution_pointers:
            what = f"execution_pointers[{pointer.id!r}]"
            pointers[pointer.id] = self._store_pointer(pointer, what)
        self._instances[workflow_id] = _StoredInstance(
            header, pointers, next(self._seq), owner, lease_until if owner else None
        )
        if key is not None:
            self._by_idempotency_key[(header.workflow_definition_id, key)] = workflow_id
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
        await self._enter()
        if not isinstance(instance, WorkflowInstance):
            raise TypeError(f"instance must be a WorkflowInstance, not {type(instance).__name__}")
        stored = self._instances.get(instance.id)
        if stored is None:
            raise WorkflowNotFound(instance.id)
        if stored.header.revision != instance.revision:
            raise ConcurrencyError(instance.id, instance.revision)
        live = stored.claimed(self._clock())
        if owner is None:
            if live:
                raise LeaseLost(instance.id, None)
        else:
            if not live or stored.owner != owner:
                raise LeaseLost(instance.id, owner)
            if stored.control is not None and not apply_control:
                raise ControlPending(instance.id, stored.control)
        # Build the stored form of everything first: nothing is written unless all of
        # it can be.
        header = self._store_header(instance)
        header.revision = instance.revision + 1
        header.idempotency_key = stored.header.idempotency_key  # written on create only
        changed = [
            (p.id, self._store_pointer(p, f"execution_pointers[{p.id!r}]"))
            for p in instance.changed_pointers()
        ]
        new_subs = self._prepare_subscriptions(originals, "subscriptions")
        # Commit.
        stored.header = header
        if owner is not None and apply_control:
            stored.control = None
        if owner is not None and instance.status in _FINISHED:  # ending it drops the claim
            stored.owner = None
            stored.lease_until = None
        for pointer_id, pointer in changed:
            stored.pointers[pointer_id] = pointer
        for sub in new_subs:
            self._insert_subscription(sub)
        for original, sub in zip(originals, new_subs, strict=True):
            original.id = sub.id
        instance.revision += 1
        instance.mark_persisted()

    async def claim_workflow(
        self, workflow_id: str, owner: str, lease_until: datetime
    ) -> bool | Claim:
        """Take or renew ``owner``'s claim unless another owner holds a live one."""
        _check_claim(owner, lease_until)
        lease_until = _required_utc(lease_until, "lease_until")
        await self._enter()
        stored = self._instances.get(workflow_id)
        if stored is None:
            raise WorkflowNotFound(workflow_id)
        if stored.owner != owner and stored.claimed(self._clock()):
            return Claim.REFUSED
        taken = stored.owner is not None and stored.owner != owner
        stored.owner = owner
        stored.lease_until = lease_until
        return Claim.TAKEN_OVER if taken else Claim.CLAIMED

    async def release_workflow(self, workflow_id: str, owner: str) -> None:
        """Drop ``owner``'s claim (a no-op when it does not hold it)."""
        await self._enter()
        stored = self._instances.get(workflow_id)
        if stored is not None and stored.owner == owner:
            stored.owner = None
            stored.lease_until = None

    async def request_control(self, workflow_id: str, action: str) -> None:
        """Record a pending control request (a pending terminate is kept)."""
        _check_control_action(action)
        await self._enter()
        stored = self._instances.get(workflow_id)
        if stored is None:
            raise WorkflowNotFound(workflow_id)
        if stored.control != "terminate":
            stored.control = action

    async def get_pending_controls(
        self, workflow_ids: Iterable[str] | None = None, as_at: datetime | None = None
    ) -> dict[str, str]:
        """Pending control requests (see ``WorkflowRepository.get_pending_controls``)."""
        ids = None if workflow_ids is None else _id_list(workflow_ids, "workflow_ids")
        now = self._clock() if as_at is None else _required_utc(as_at, "as_at")
        await self._enter()
        if ids is not None:
            found = ((i, self._instances.get(i)) for i in dict.fromkeys(ids))
            return {i: s.control for i, s in found if s is not None and s.control is not None}
        out: dict[str, str] = {}
        for workflow_id, stored in self._instances.items():
            if stored.control is not None and not stored.claimed(now):
                out[workflow_id] = stored.control
                if len(out) >= 1000:
                    break
        return out

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Return a copy of the instance, or raise ``WorkflowNotFound``."""
        await self._enter()
        stored = self._instances.get(workflow_id)
        if stored is None:
            raise WorkflowNotFound(workflow_id)
        return self._load(stored)

    async def get_workflow_instances(self, workflow_ids: Iterable[str]) -> list[WorkflowInstance]:
        """Copies of the instances found, in the order asked (each once)."""
        ids = _id_list(workflow_ids, "workflow_ids")
        await self._enter()
        result: list[WorkflowInstance] = []
        for workflow_id in dict.fromkeys(ids):
            stored = self._instances.get(workflow_id)
            if stored is not None:
                result.append(self._load(stored))
        return result

    async def get_runnable_instances(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of RUNNABLE instances due at ``as_at`` and not claimed then, earliest
        ``next_execution`` first."""
        _check_aware(as_at, "as_at")
        _non_negative(limit, "limit")
        await self._enter()
        due = [
            (s.header.next_execution, s.seq, workflow_id)
            for workflow_id, s in self._instances.items()
            if s.header.status == WorkflowStatus.RUNNABLE
            and s.header.next_execution is not None
            and s.header.next_execution <= as_at
            and not s.claimed(as_at)
        ]
        due.sort(key=lambda t: (t[0], t[1]))
        return [workflow_id for _, _, workflow_id in due[:limit]]

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
        idempotency_key: str | None = None,
    ) -> list[WorkflowInstance]:
        """Matching instances, oldest ``create_time`` first (ties by id), paged;
        ``newest_first`` reverses the order."""
        _non_negative(skip, "skip")
        _non_negative(take, "take")
        matches = await self._matching(
            status, definition_id, reference, created_from, created_to, idempotency_key
        )
        matches.sort(key=lambda s: (s.header.create_time, s.header.id), reverse=newest_first)
        return [self._load(s) for s in matches[skip : skip + take]]

    async def count_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """How many instances match the filters of :meth:`query_workflows`."""
        return len(
            await self._matching(
                status, definition_id, reference, created_from, created_to, idempotency_key
            )
        )

    async def _matching(
        self,
        status: WorkflowStatus | None,
        definition_id: str | None,
        reference: str | None,
        created_from: datetime | None,
        created_to: datetime | None,
        idempotency_key: str | None = None,
    ) -> list[_StoredInstance]:
        """The stored instances matching every filter given (unordered)."""
        _check_aware(created_from, "created_from")
        _check_aware(created_to, "created_to")
        await self._enter()
        matches: list[_StoredInstance] = []
        for stored in self._instances.values():
            h = stored.header
            if status is not None and h.status != status:
                continue
            if definition_id is not None and h.workflow_definition_id != definition_id:
                continue
            if reference is not None and h.reference != reference:
                continue
            if idempotency_key is not None and h.idempotency_key != idempotency_key:
                continue
            if created_from is not None and h.create_time < created_from:
                continue
            if created_to is not None and h.create_time >= created_to:
                continue
            matches.append(stored)
        return matches

    async def purge_workflows(self, status: WorkflowStatus, older_than: datetime) -> int:
        """Delete finished instances completed before ``older_than`` with their
        subscriptions and errors; return the count."""
        self.require(Capability.PURGE)
        if status not in _FINISHED:
            raise ValueError(f"purge_workflows only purges COMPLETE or TERMINATED, not {status!r}")
        _check_aware(older_than, "older_than")
        await self._enter()
        doomed = [
            workflow_id
            for workflow_id, s in self._instances.items()
            if s.header.status == status
            and s.header.complete_time is not None
            and s.header.complete_time < older_than
        ]
        for workflow_id in doomed:
            gone = self._instances.pop(workflow_id).header
            if gone.idempotency_key is not None:
                self._by_idempotency_key.pop(
                    (gone.workflow_definition_id, gone.idempotency_key), None
                )
            for sub_id in list(self._subs_by_workflow.get(workflow_id, ())):
                self._delete_subscription(sub_id)
            self._errors.pop(workflow_id, None)
        return len(doomed)

    # -- subscriptions -----------------------------------------------------------------

    def _prepare_subscriptions(
        self, subscriptions: Iterable[EventSubscription], what: str
    ) -> list[EventSubscription]:
        """Stored forms with ids assigned (ids not yet written back to the originals)."""
        prepared: list[EventSubscription] = []
        seen: set[str] = set()
        for i, sub in enumerate(subscriptions):
            where = f"{what}[{i}]"
            if not isinstance(sub, EventSubscription):
                raise TypeError(f"{where} must be an EventSubscription, not {type(sub).__name__}")
            _check_subscription_text(sub, where)
            sub_id = sub.id or new_id()
            if sub_id in self._subscriptions or sub_id in seen:
                raise ValueError(f"{where}: a subscription with id {sub_id!r} already exists")
            seen.add(sub_id)
            prepared.append(
                EventSubscription(
                    workflow_id=sub.workflow_id,
                    step_id=sub.step_id,
                    execution_pointer_id=sub.execution_pointer_id,
                    event_name=sub.event_name,
                    event_key=sub.event_key,
                    subscribe_as_of=_required_utc(sub.subscribe_as_of, f"{where}.subscribe_as_of"),
                    subscription_data=self._encode(
                        sub.subscription_data, f"{where}.subscription_data"
                    ),
                    id=sub_id,
                    external_token=sub.external_token,
                    external_worker_id=sub.external_worker_id,
                    external_token_expiry=_utc(
                        sub.external_token_expiry, f"{where}.external_token_expiry"
                    ),
                )
            )
        return prepared

    def _insert_subscription(self, sub: EventSubscription) -> None:
        self._subscriptions[sub.id] = _StoredSubscription(sub, next(self._seq))
        self._subs_by_topic.setdefault((sub.event_name, sub.event_key), {})[sub.id] = None
        self._subs_by_workflow.setdefault(sub.workflow_id, {})[sub.id] = None

    def _delete_subscription(self, subscription_id: str) -> None:
        sub = self._subscriptions.pop(subscription_id).subscription
        topic = (sub.event_name, sub.event_key)
        by_topic = self._subs_by_topic[topic]
        del by_topic[subscription_id]
        if not by_topic:
            del self._subs_by_topic[topic]
        by_workflow = self._subs_by_workflow[sub.workflow_id]
        del by_workflow[subscription_id]
        if not by_workflow:
            del self._subs_by_workflow[sub.workflow_id]

    def _load_subscription(self, sub: EventSubscription) -> EventSubscription:
        return EventSubscription(
            workflow_id=sub.workflow_id,
            step_id=sub.step_id,
            execution_pointer_id=sub.execution_pointer_id,
            event_name=sub.event_name,
            event_key=sub.event_key,
            subscribe_as_of=sub.subscribe_as_of,
            subscription_data=self._decode(sub.subscription_data, "subscription_data"),
            id=sub.id,
            external_token=sub.external_token,
            external_worker_id=sub.external_worker_id,
            external_token_expiry=sub.external_token_expiry,
        )

    def _topic_subscriptions(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> list[EventSubscription]:
        found = [
            self._subscriptions[sub_id]
            for sub_id in self._subs_by_topic.get((event_name, event_key), ())
        ]
        live = [s for s in found if s.subscription.subscribe_as_of <= as_of]
        live.sort(key=lambda s: (s.subscription.subscribe_as_of, s.seq))
        return [s.subscription for s in live]

    async def create_subscription(self, subscription: EventSubscription) -> str:
        """Insert a subscription; return its id (assigned when empty, written back)."""
        await self._enter()
        (sub,) = self._prepare_subscriptions([subscription], "subscription")
        self._insert_subscription(sub)
        subscription.id = sub.id
        return sub.id

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """Return a copy of a live subscription, or raise ``SubscriptionNotFound``."""
        await self._enter()
        stored = self._subscriptions.get(subscription_id)
        if stored is None:
            raise SubscriptionNotFound(subscription_id)
        return self._load_subscription(stored.subscription)

    async def get_subscriptions(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> list[EventSubscription]:
        """Live subscriptions on this name and key as of ``as_of``, oldest first."""
        _check_aware(as_of, "as_of")
        await self._enter()
        return [
            self._load_subscription(s)
            for s in self._topic_subscriptions(event_name, event_key, as_of)
        ]

    async def get_first_open_subscription(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> EventSubscription | None:
        """The oldest matching subscription without a live token, or None."""
        _check_aware(as_of, "as_of")
        await self._enter()
        now = self._clock()
        for sub in self._topic_subscriptions(event_name, event_key, as_of):
            if not _token_live(sub, now):
                return self._load_subscription(sub)
        return None

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Delete a subscription, or raise ``SubscriptionNotFound``."""
        await self._enter()
        if subscription_id not in self._subscriptions:
            raise SubscriptionNotFound(subscription_id)
        self._delete_subscription(subscription_id)

    async def terminate_subscriptions(
        self, workflow_id: str, pointer_ids: Iterable[str] | None = None
    ) -> int:
        """Delete a workflow's subscriptions (or those of some pointers); return the count."""
        wanted = None if pointer_ids is None else set(_id_list(pointer_ids, "pointer_ids"))
        await self._enter()
        doomed = [
            sub_id
            for sub_id in self._subs_by_workflow.get(workflow_id, ())
            if wanted is None
            or self._subscriptions[sub_id].subscription.execution_pointer_id in wanted
        ]
        for sub_id in doomed:
            self._delete_subscription(sub_id)
        return len(doomed)

    async def set_subscription_token(
        self, subscription_id: str, token: str, worker_id: str, expiry: datetime
    ) -> bool:
        """Claim the subscription if no live token is held; return whether we won."""
        expiry = _required_utc(expiry, "expiry")
        _check_key(token, "token")
        _check_key(worker_id, "worker_id")
        await self._enter()
        stored = self._subscriptions.get(subscription_id)
        if stored is None:
            raise SubscriptionNotFound(subscription_id)
        sub = stored.subscription
        if _token_live(sub, self._clock()):
            return False
        sub.external_token = token
        sub.external_worker_id = worker_id
        sub.external_token_expiry = expiry
        return True

    async def clear_subscription_token(self, subscription_id: str, token: str) -> None:
        """Release the claim held with ``token``; ``TokenMismatch`` for any other token."""
        await self._enter()
        stored = self._subscriptions.get(subscription_id)
        if stored is None:
            raise SubscriptionNotFound(subscription_id)
        sub = stored.subscription
        if sub.external_token is None or sub.external_token != token:
            raise TokenMismatch(subscription_id)
        sub.external_token = None
        sub.external_worker_id = None
        sub.external_token_expiry = None

    # -- events ------------------------------------------------------------------------

    def _load_event(self, event: Event) -> Event:
        return Event(
            event_name=event.event_name,
            event_key=event.event_key,
            event_data=self._decode(event.event_data, "event_data"),
            event_time=event.event_time,
            id=event.id,
            is_processed=event.is_processed,
            set_aside=event.set_aside,
            headers=dict(event.headers),
        )

    async def create_event(self, event: Event) -> str:
        """Insert an event; return its id (assigned when empty, written back)."""
        self.check_type(event, Event, "event")
        _check_event_text(event)
        event_time = _required_utc(event.event_time, "event.event_time")
        await self._enter()
        event_id = event.id or new_id()
        if event_id in self._events:
            raise DuplicateEventId(event_id)
        stored = Event(
            event_name=event.event_name,
            event_key=event.event_key,
            event_data=self._encode(event.event_data, "event_data"),
            event_time=event_time,
            id=event_id,
            is_processed=bool(event.is_processed) or event.set_aside is not None,
            set_aside=self.check_reason(event.set_aside) if event.set_aside is not None else None,
            headers=check_headers(event.headers),
        )
        self._events[event_id] = _StoredEvent(stored, next(self._seq))
        self._events_by_topic.setdefault((stored.event_name, stored.event_key), {})[event_id] = None
        if not stored.is_processed:
            self._unprocessed[event_id] = None
        event.id = event_id
        return event_id

    async def get_event(self, event_id: str) -> Event:
        """Return a copy of the event, or raise ``EventNotFound``."""
        await self._enter()
        stored = self._events.get(event_id)
        if stored is None:
            raise EventNotFound(event_id)
        return self._load_event(stored.event)

    async def get_runnable_events(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of unprocessed events with ``event_time <= as_at``, oldest first."""
        _check_aware(as_at, "as_at")
        _non_negative(limit, "limit")
        await self._enter()
        due = [self._events[event_id] for event_id in self._unprocessed]
        due = [s for s in due if s.event.event_time <= as_at]
        due.sort(key=lambda s: (s.event.event_time, s.seq))
        return [s.event.id for s in due[:limit]]

    async def get_events(self, event_name: str, event_key: str, as_of: datetime) -> list[str]:
        """Ids of events on this name and key with ``event_time >= as_of``, oldest first."""
        _check_aware(as_of, "as_of")
        await self._enter()
        found = [
            self._events[event_id]
            for event_id in self._events_by_topic.get((event_name, event_key), ())
        ]
        found = [s for s in found if s.event.event_time >= as_of]
        found.sort(key=lambda s: (s.event.event_time, s.seq))
        return [s.event.id for s in found]

    async def mark_event_processed(self, event_id: str) -> None:
        """Set ``is_processed``, or raise ``EventNotFound``."""
        await self._enter()
        stored = self._events.get(event_id)
        if stored is None:
            raise EventNotFound(event_id)
        stored.event.is_processed = True
        self._unprocessed.pop(event_id, None)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Clear ``is_processed`` (a set-aside event stays processed), or raise
        ``EventNotFound``."""
        await self._enter()
        stored = self._events.get(event_id)
        if stored is None:
            raise EventNotFound(event_id)
        if stored.event.set_aside is not None:
            return
        stored.event.is_processed = False
        self._unprocessed[event_id] = None

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        """Mark the event processed for good with ``reason``; True when this call did."""
        reason = self.check_reason(reason)
        await self._enter()
        stored = self._events.get(event_id)
        if stored is None:
            raise EventNotFound(event_id)
        if stored.event.set_aside is not None:
            return False
        stored.event.set_aside = reason
        stored.event.is_processed = True
        self._unprocessed.pop(event_id, None)
        return True

    # -- scheduled commands ------------------------------------------------------------

    def _put_command(self, key: tuple[str, str], execute_time: datetime) -> None:
        existing = self._commands.get(key)
        if existing is None or execute_time < existing:
            self._commands[key] = execute_time

    async def schedule_command(self, command: ScheduledCommand) -> None:
        """Store a command once per ``(command_name, data)``, keeping the earlier time."""
        self.require(Capability.SCHEDULED_COMMANDS)
        self.check_type(command, ScheduledCommand, "command")
        _check_key(command.data, "command.data")
        execute_time = _required_utc(command.execute_time, "command.execute_time")
        await self._enter()
        self._put_command((command.command_name, command.data), execute_time)

    async def process_commands(self, as_of: datetime, handler: CommandHandler) -> int:
        """Hand each due command to ``handler`` (each to exactly one processor); delete
        it when the handler returns, keep it when it raises; return the successes."""
        self.require(Capability.SCHEDULED_COMMANDS)
        _check_aware(as_of, "as_of")
        await self._enter()
        due = sorted(
            ((t, key) for key, t in self._commands.items() if t <= as_of),
            key=lambda item: item[0],
        )
        handled = 0
        for _, key in due:
            if self._closed:
                break
            # Claim it now: a concurrent processor may have claimed it, or it may have
            # been handled and rescheduled later, while we awaited the last handler.
            execute_time = self._commands.get(key)
            if execute_time is None or execute_time > as_of:
                continue
            del self._commands[key]
            self._in_flight[key] = execute_time
            try:
                await handler(ScheduledCommand(key[0], key[1], execute_time))
            except Exception:
                _log.warning("scheduled command %s(%r) failed; kept", key[0], key[1], exc_info=True)
                self._release_command(key, succeeded=False)
            except BaseException:
                self._release_command(key, succeeded=False)
                raise
            else:
                self._release_command(key, succeeded=True)
                handled += 1
        return handled

    def _release_command(self, key: tuple[str, str], *, succeeded: bool) -> None:
        execute_time = self._in_flight.pop(key, None)
        if self._closed or execute_time is None or succeeded:
            return
        # Back to the pending set; if it was scheduled again meanwhile, the earlier
        # execute_time wins.
        self._put_command(key, execute_time)

    # -- errors ------------------------------------------------------------------------

    async def persist_errors(self, errors: Iterable[ExecutionError]) -> None:
        """Append errors to the log (all or none)."""
        prepared: list[ExecutionError] = []
        for i, error in enumerate(errors):
            if not isinstance(error, ExecutionError):
                raise TypeError(
                    f"errors[{i}] must be an ExecutionError, not {type(error).__name__}"
                )
            prepared.append(
                ExecutionError(
                    workflow_id=error.workflow_id,
                    execution_pointer_id=error.execution_pointer_id,
                    message=error.message,
                    error_type=error.error_type,
                    traceback=error.traceback,
                    error_time=_required_utc(error.error_time, f"errors[{i}].error_time"),
                    id=error.id,
                )
            )
        await self._enter()
        for error in prepared:
            self._errors.setdefault(error.workflow_id, []).append(error)

    async def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """A workflow's errors, oldest first (ties in the order persisted)."""
        await self._enter()
        errors = sorted(self._errors.get(workflow_id, ()), key=lambda e: e.error_time)
        return [
            ExecutionError(
                workflow_id=e.workflow_id,
                execution_pointer_id=e.execution_pointer_id,
                message=e.message,
                error_type=e.error_type,
                traceback=e.traceback,
                error_time=e.error_time,
                id=e.id,
            )
            for e in errors
        ]


if TYPE_CHECKING:

    def _conforms(p: MemoryPersistenceProvider) -> PersistenceProvider:
        return p  # mypy checks that the class implements the whole protocol
