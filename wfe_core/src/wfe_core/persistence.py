"""The persistence contract: the repository protocols every store implements.

Every method is a coroutine and raises only :mod:`wfe_core.errors` types. A provider
returns copies: mutating an object it handed out never changes the store, and an
object handed in may be changed by the caller afterwards without effect. Times are
timezone-aware UTC datetimes; naive datetimes are refused with ``ValueError``.

Every store keeps the same text: event names and keys, workflow definition ids,
references, idempotency keys, activity worker ids and tokens of at most
:data:`MAX_KEY_LENGTH` (400) characters, ids a caller gives of at most
:data:`MAX_ID_LENGTH` (200), and no NUL character or lone surrogate anywhere in them
or in a description. ``create_workflow``, ``persist_workflow`` (its new
subscriptions), ``create_subscription``, ``create_event``, ``set_subscription_token``
and ``schedule_command`` refuse anything else with ``ValueError`` naming the field and
the limit, before writing anything (:func:`check_instance_text`,
:func:`check_subscription_text`, :func:`check_event_text`, :func:`check_key`).
Look-ups by such a value (``get_events``, ``get_subscriptions``,
``get_first_open_subscription``, ``query_workflows`` filters) find nothing
(:func:`storable_key`).

The conformance suite (:mod:`wfe_conformance`) pins down each of these semantics.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from enum import IntEnum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from wfe_core.capabilities import Capability
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
)

__all__ = [
    "CONTROL_ACTIONS",
    "MAX_ID_LENGTH",
    "MAX_KEY_LENGTH",
    "Claim",
    "CommandHandler",
    "ErrorRepository",
    "EventRepository",
    "PersistenceProvider",
    "ScheduledCommandRepository",
    "SubscriptionRepository",
    "WorkflowRepository",
    "check_aware",
    "check_claim",
    "check_control_action",
    "check_event_text",
    "check_id",
    "check_idempotency_key",
    "check_instance_text",
    "check_key",
    "check_non_negative",
    "check_owner",
    "check_subscription_text",
    "check_text",
    "id_list",
    "storable_key",
]

CommandHandler = Callable[[ScheduledCommand], Awaitable[None]]
"""The coroutine function ``process_commands`` hands each due command to."""


def check_aware(value: datetime | None, what: str) -> None:
    """Argument check for providers: refuse a naive datetime with ``ValueError`` and a
    non-datetime with ``TypeError`` (``what`` names the argument); None passes."""
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (UTC), got the naive {value!r}")


def check_non_negative(value: int, what: str) -> None:
    """Argument check for providers: refuse a negative count with ``ValueError``."""
    if value < 0:
        raise ValueError(f"{what} must be >= 0, not {value!r}")


def id_list(ids: Iterable[str], what: str) -> list[str]:
    """Argument check for providers: a list of ids from an iterable (a lone string is
    refused with ``TypeError``, not split into characters)."""
    if isinstance(ids, str):
        raise TypeError(f"{what} must be an iterable of ids, not a single string")
    return list(ids)


MAX_KEY_LENGTH = 400
"""The longest event name, event key, workflow definition id, workflow reference,
activity worker id or token every store keeps, in characters (Unicode code points, as
``len()`` counts them -- not bytes): the SQL stores keep them in ``VARCHAR(400)``
columns. Longer values are refused with ``ValueError`` by every provider."""

MAX_ID_LENGTH = 200
"""The longest id (of a workflow instance, event or subscription) a caller may give,
in characters; generated ids are far shorter."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(
    value: object, what: str, max_length: int | None = MAX_KEY_LENGTH, *, optional: bool = False
) -> None:
    """Argument check for providers (and the host, before it stores anything): refuse
    text that some store cannot keep, so that every store keeps the same values.

    Raises ``TypeError`` for a non-string (``None`` passes when ``optional``) and
    ``ValueError`` naming ``what`` and the limit for a string longer than
    ``max_length`` characters (``None``: no limit), one holding a NUL character
    (``"\\x00"``: PostgreSQL text cannot hold it) or a lone surrogate (not encodable
    as UTF-8).
    """
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise ValueError(
            f"{what} is {len(value)} characters long; the limit is {max_length} characters"
        )
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character (\\x00), which no store can keep")
    if _SURROGATE.search(value) is not None:
        raise ValueError(f"{what} contains a lone surrogate, which is not valid Unicode text")


def check_key(value: object, what: str, *, optional: bool = False) -> None:
    """:func:`check_text` with the :data:`MAX_KEY_LENGTH` limit: for event names and
    keys, workflow definition ids, references, activity worker ids and tokens."""
    check_text(value, what, MAX_KEY_LENGTH, optional=optional)


def check_id(value: object, what: str) -> None:
    """:func:`check_text` with the :data:`MAX_ID_LENGTH` limit, for an id a caller gives
    (the empty string, "assign one", passes)."""
    check_text(value, what, MAX_ID_LENGTH)


def check_idempotency_key(value: object, what: str = "idempotency_key") -> None:
    """Argument check for an idempotency key: a non-empty string within
    :func:`check_key`'s limits (``TypeError`` for another type, ``ValueError`` for an
    empty or unstorable string); None passes (no key)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string or None, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must be a non-empty string (or None for no key)")
    check_key(value, what)


def check_instance_text(instance: WorkflowInstance, what: str = "instance") -> None:
    """The text checks of a new instance: its id (when given), definition id,
    reference, idempotency key and description (see :func:`check_text` and
    :func:`check_idempotency_key`)."""
    check_id(instance.id, f"{what}.id")
    check_key(instance.workflow_definition_id, f"{what}.workflow_definition_id")
    check_key(instance.reference, f"{what}.reference", optional=True)
    check_idempotency_key(instance.idempotency_key, f"{what}.idempotency_key")
    check_text(instance.description, f"{what}.description", None, optional=True)


def check_subscription_text(subscription: EventSubscription, what: str = "subscription") -> None:
    """The text checks of a new subscription: its ids, event name and key, and any
    claim it carries (see :func:`check_text`)."""
    check_id(subscription.id, f"{what}.id")
    check_id(subscription.workflow_id, f"{what}.workflow_id")
    check_id(subscription.execution_pointer_id, f"{what}.execution_pointer_id")
    check_key(subscription.event_name, f"{what}.event_name")
    check_key(subscription.event_key, f"{what}.event_key")
    check_key(subscription.external_token, f"{what}.external_token", optional=True)
    check_key(subscription.external_worker_id, f"{what}.external_worker_id", optional=True)


def check_event_text(event: Event, what: str = "event") -> None:
    """The text checks of a new event: its id (when given), name and key (see
    :func:`check_text`)."""
    check_id(event.id, f"{what}.id")
    check_key(event.event_name, f"{what}.event_name")
    check_key(event.event_key, f"{what}.event_key")


def storable_key(value: object) -> bool:
    """Whether ``value`` is a key :func:`check_key` accepts. Look-ups by a key no store
    can hold (``get_events``, ``get_subscriptions``, ``get_first_open_subscription``,
    the ``definition_id`` / ``reference`` filters of ``query_workflows``) find nothing
    rather than raise: a provider may answer them without asking the store."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_KEY_LENGTH
        and "\x00" not in value
        and _SURROGATE.search(value) is None
    )


CONTROL_ACTIONS: frozenset[str] = frozenset({"suspend", "resume", "terminate"})
"""The control requests :meth:`WorkflowRepository.request_control` records."""


def check_control_action(action: str) -> None:
    """Argument check for providers: ``action`` is one of :data:`CONTROL_ACTIONS`."""
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"control action must be one of {sorted(CONTROL_ACTIONS)}, not {action!r}")


def check_owner(owner: str, what: str = "owner") -> None:
    """Argument check for providers: an owner id is a non-empty string of at most 100
    characters."""
    if not isinstance(owner, str) or not owner or len(owner) > 100:
        raise ValueError(f"{what} must be a non-empty string of at most 100 characters")


def check_claim(owner: str, lease_until: datetime | None) -> None:
    """Argument check for providers: a claim (``claim_workflow``, or ``create_workflow``
    with an owner) has a valid owner id and an aware ``lease_until``."""
    check_owner(owner)
    if lease_until is None:
        raise TypeError("lease_until must be a datetime when owner is given")
    check_aware(lease_until, "lease_until")


class Claim(IntEnum):
    """What :meth:`WorkflowRepository.claim_workflow` did. An ``int`` whose truth is
    "the caller holds the claim now", so ``if await repo.claim_workflow(...)`` reads
    as before; a provider that cannot tell a takeover apart may return a plain bool."""

    REFUSED = 0
    """Another owner holds a live claim: nothing changed."""
    CLAIMED = 1
    """The instance was unclaimed (or released), or the caller held it already (a
    renewal)."""
    TAKEN_OVER = 2
    """Another owner's claim had expired and the caller took it over: that owner
    stopped renewing its lease (it died, hung, or lost the store) mid-run."""


@runtime_checkable
class WorkflowRepository(Protocol):
    """Stores workflow instances and their execution pointers.

    Ownership fencing
    -----------------
    A host that runs an instance first *claims* it in the store
    (:meth:`claim_workflow`: an owner id and a lease expiry on the instance, taken with
    an atomic compare-and-set) and writes every checkpoint with ``owner=`` its id.
    The store refuses (:class:`~wfe_core.errors.LeaseLost`, nothing written) a
    checkpoint whose owner does not hold a live claim, and one written without an owner
    while another owner holds a live claim. So two hosts never both hold a live claim,
    and a host whose lease lapsed can write nothing more for that instance, whatever
    happens to a distributed lock service in front of the store. A claim is live while
    the store's clock is before its expiry.

    Idempotency keys
    ----------------
    An instance may carry an ``idempotency_key``. The pair
    ``(workflow_definition_id, idempotency_key)`` is unique in the store, enforced
    atomically by :meth:`create_workflow` (a unique constraint or its equivalent): of
    any number of concurrent creates with one pair, from one process or many, exactly
    one is stored. Instances without a key (None) never conflict, and the same key
    under another definition id is another pair. The key is kept as long as the
    instance is stored (completed or terminated too) and is freed only when
    :meth:`purge_workflows` deletes it. It is returned by every read
    (``get_workflow_instance``, ``get_workflow_instances``, ``query_workflows``) and
    never changed by :meth:`persist_workflow`.
    """

    async def create_workflow(
        self,
        instance: WorkflowInstance,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> str:
        """Insert a new instance with all its pointers and return its id.

        An empty ``instance.id`` is replaced by a new UUID (written back to the
        object); the stored and returned revision is 1. Creating an id that already
        exists raises :class:`~wfe_core.errors.ConcurrencyError`. With ``owner`` and
        ``lease_until`` the instance is stored already claimed by ``owner`` (the same
        claim :meth:`claim_workflow` takes).

        When another stored instance of the same ``workflow_definition_id`` has the
        same non-None ``instance.idempotency_key``, nothing is written and
        :class:`~wfe_core.errors.DuplicateIdempotencyKey` (a ``ConcurrencyError``) is
        raised with ``existing_id`` naming that instance -- atomically, so concurrent
        creates with one key store exactly one instance (see "Idempotency keys"). An
        empty key or a key of another type is refused by
        :func:`check_idempotency_key`.
        """
        ...

    async def persist_workflow(
        self,
        instance: WorkflowInstance,
        subscriptions: Sequence[EventSubscription] = (),
        *,
        owner: str | None = None,
        apply_control: bool = False,
    ) -> None:
        """Save the instance header, data and changed pointers, and create the new
        subscriptions, atomically: all of it or none of it.

        Raises :class:`~wfe_core.errors.ConcurrencyError` (and changes nothing) when
        the stored revision is not ``instance.revision``;
        :class:`~wfe_core.errors.WorkflowNotFound` for an unknown id. On success the
        stored revision and ``instance.revision`` are both bumped by one, the
        subscriptions get ids (written back to the objects), and
        ``instance.mark_persisted()`` is called. Cost grows with the pointers that
        changed, not with all pointers. A call that is cancelled may or may not have
        committed; reload the instance before writing it again (a stale revision then
        raises ConcurrencyError, so nothing is overwritten).

        Fencing: with ``owner``, the write is refused with
        :class:`~wfe_core.errors.LeaseLost` unless ``owner`` holds a live claim; it is
        refused with :class:`~wfe_core.errors.ControlPending` while a control request
        is pending, unless ``apply_control`` is true, in which case the request is
        cleared by the same write. An owned write that leaves the instance COMPLETE or
        TERMINATED also drops the claim (no separate release). Without ``owner``, it is
        refused with ``LeaseLost`` while anyone holds a live claim (pending requests are
        left alone).
        ``instance.control_request`` and ``instance.idempotency_key`` are never
        written.
        """
        ...

    async def claim_workflow(
        self, workflow_id: str, owner: str, lease_until: datetime
    ) -> bool | Claim:
        """Atomic compare-and-set: make ``owner`` the holder of the instance until
        ``lease_until`` when no claim is held, the held one has expired, or ``owner``
        holds it already (a renewal); return whether ``owner`` holds it now, as a
        :class:`Claim`: ``TAKEN_OVER`` when the claim taken was another owner's,
        expired (counted as a lease takeover), ``CLAIMED`` otherwise, ``REFUSED`` (0)
        when another owner holds a live one. Of N concurrent callers with different
        owners at most one wins. Raises :class:`~wfe_core.errors.WorkflowNotFound` for
        an unknown id."""
        ...

    async def release_workflow(self, workflow_id: str, owner: str) -> None:
        """Drop ``owner``'s claim. Releasing a claim ``owner`` does not hold (or an
        unknown id) is a no-op: it never frees another owner's claim."""
        ...

    async def request_control(self, workflow_id: str, action: str) -> None:
        """Record a pending ``suspend`` / ``resume`` / ``terminate`` request, durably,
        without touching the revision or the claim; the holder applies it. A pending
        ``terminate`` is never replaced by another action. Raises
        :class:`~wfe_core.errors.WorkflowNotFound` for an unknown id and ``ValueError``
        for an unknown action."""
        ...

    async def get_pending_controls(
        self, workflow_ids: Iterable[str] | None = None, as_at: datetime | None = None
    ) -> dict[str, str]:
        """Pending control requests by workflow id: among ``workflow_ids`` when given
        (unknown ids skipped), else every instance with a pending request and no claim
        live at ``as_at`` (default now; at most 1000)."""
        ...

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Return the instance with its pointers in creation order, or raise
        :class:`~wfe_core.errors.WorkflowNotFound`. The result has no pending changes."""
        ...

    async def get_workflow_instances(self, workflow_ids: Iterable[str]) -> list[WorkflowInstance]:
        """Return the instances found for these ids, in the order asked; unknown ids are
        skipped."""
        ...

    async def get_runnable_instances(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of RUNNABLE instances with ``next_execution <= as_at`` and no claim live at
        ``as_at``, earliest ``next_execution`` first, at most ``limit``. An instance a
        host is running (its claim live) is left out -- its holder carries on with it --
        and listed again once the claim is released or has expired, so pollers of other
        hosts do not queue it over and over while it runs."""
        ...

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
        """Instances matching every filter given, oldest ``create_time`` first (ties by
        id), skipping ``skip`` and returning at most ``take``. ``created_from`` is
        inclusive, ``created_to`` exclusive. With ``newest_first`` the order is
        reversed: newest ``create_time`` first, ties by id descending.
        ``idempotency_key`` matches the key an instance was started with (together
        with ``definition_id`` it is a lookup on the unique key; alone it may scan)."""
        ...

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
        """How many instances match every filter given: the same filters, with the same
        meaning, as :meth:`query_workflows` (so it equals the length of an unpaged
        query)."""
        ...

    async def purge_workflows(self, status: WorkflowStatus, older_than: datetime) -> int:
        """Delete instances in ``status`` (COMPLETE or TERMINATED) whose
        ``complete_time`` is before ``older_than``, with their pointers, subscriptions
        and errors; return the count. Their idempotency keys are freed (a later create
        may use them again). Capability ``PURGE``."""
        ...


@runtime_checkable
class SubscriptionRepository(Protocol):
    """Stores event subscriptions and the activity-claim tokens on them."""

    async def create_subscription(self, subscription: EventSubscription) -> str:
        """Insert a subscription and return its id (assigned when empty, written back)."""
        ...

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """Return a live subscription or raise
        :class:`~wfe_core.errors.SubscriptionNotFound`."""
        ...

    async def get_subscriptions(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> list[EventSubscription]:
        """Every live subscription with exactly this name and key and
        ``subscribe_as_of <= as_of`` (claimed or not), oldest ``subscribe_as_of``
        first."""
        ...

    async def get_first_open_subscription(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> EventSubscription | None:
        """The oldest live subscription with this name and key,
        ``subscribe_as_of <= as_of`` and no live token (none held, or its expiry is at
        or before now), or None."""
        ...

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; raise :class:`~wfe_core.errors.SubscriptionNotFound`
        when it does not exist."""
        ...

    async def terminate_subscriptions(
        self, workflow_id: str, pointer_ids: Iterable[str] | None = None
    ) -> int:
        """Delete every subscription of a workflow (or only those of the given
        pointers); return how many were deleted. Unknown ids are not an error."""
        ...

    async def set_subscription_token(
        self, subscription_id: str, token: str, worker_id: str, expiry: datetime
    ) -> bool:
        """Atomic compare-and-set: claim the subscription with ``token`` if no token is
        held or the held one has expired; return whether this caller won. Of N
        concurrent callers exactly one wins. Raises
        :class:`~wfe_core.errors.SubscriptionNotFound` for an unknown id."""
        ...

    async def clear_subscription_token(self, subscription_id: str, token: str) -> None:
        """Release the claim held with ``token``. A different (or no) token held raises
        :class:`~wfe_core.errors.TokenMismatch` and changes nothing; an unknown id
        raises :class:`~wfe_core.errors.SubscriptionNotFound`."""
        ...


@runtime_checkable
class EventRepository(Protocol):
    """Stores published events.

    Set-aside events
    ----------------
    An event whose data cannot be decoded (poison data) is *set aside*
    (:meth:`set_aside_event`): it is processed for good, with the reason stored and
    returned in ``Event.set_aside``, so later events with the same name and key flow
    past it. Setting aside is final: :meth:`mark_event_unprocessed` leaves such an event
    processed and set aside (a subscription's catch-up, which reopens older events,
    never revives it).
    """

    async def create_event(self, event: Event) -> str:
        """Insert an event and return its id (assigned when empty, written back). An
        event given with ``set_aside`` is stored set aside (and so processed).

        An event whose id is stored already is refused atomically with
        :class:`~wfe_core.errors.DuplicateEventId` (a ``ValueError``), nothing
        written: of concurrent creates with one id exactly one is stored (what makes
        ``publish_event(..., event_id=...)`` store and deliver an event once)."""
        ...

    async def get_event(self, event_id: str) -> Event:
        """Return the event or raise :class:`~wfe_core.errors.EventNotFound`."""
        ...

    async def get_runnable_events(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of unprocessed events with ``event_time <= as_at``, oldest first, at most
        ``limit``."""
        ...

    async def get_events(self, event_name: str, event_key: str, as_of: datetime) -> list[str]:
        """Ids of every event (processed or not) with exactly this name and key and
        ``event_time >= as_of``, oldest ``event_time`` first."""
        ...

    async def mark_event_processed(self, event_id: str) -> None:
        """Set ``is_processed``; raise :class:`~wfe_core.errors.EventNotFound` for an
        unknown id."""
        ...

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Clear ``is_processed``; raise :class:`~wfe_core.errors.EventNotFound` for an
        unknown id. A set-aside event stays processed and set aside."""
        ...

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        """Set the event aside: mark it processed for good and store ``reason`` (then
        returned in ``Event.set_aside``). Return True when this call set it aside, False
        when it already was (the first reason is kept), so of concurrent callers exactly
        one gets True. Raise :class:`~wfe_core.errors.EventNotFound` for an unknown id
        and ``ValueError`` for an empty reason."""
        ...


@runtime_checkable
class ScheduledCommandRepository(Protocol):
    """Stores commands to run later (capability ``SCHEDULED_COMMANDS``)."""

    async def schedule_command(self, command: ScheduledCommand) -> None:
        """Store a command; one per ``(command_name, data)``: scheduling an existing one
        again keeps the earlier ``execute_time``."""
        ...

    async def process_commands(self, as_of: datetime, handler: CommandHandler) -> int:
        """Hand every command with ``execute_time <= as_of`` to ``handler``, each to
        exactly one handler across all concurrent processors; delete a command only
        after its handler returned, keep it when the handler raised. Return the count
        handled successfully."""
        ...


@runtime_checkable
class ErrorRepository(Protocol):
    """Stores the execution-error log."""

    async def persist_errors(self, errors: Iterable[ExecutionError]) -> None:
        """Append errors to the log (all or none)."""
        ...

    async def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """A workflow's errors, oldest ``error_time`` first (ties in the order
        persisted). An unknown workflow has none."""
        ...


@runtime_checkable
class PersistenceProvider(
    WorkflowRepository,
    SubscriptionRepository,
    EventRepository,
    ScheduledCommandRepository,
    ErrorRepository,
    Protocol,
):
    """A complete store: the five repository roles plus lifecycle.

    Use it as ``async with provider:`` (calls :meth:`ensure_store_exists` on entry and
    :meth:`close` on exit).
    """

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The optional capabilities this provider supports."""
        ...

    async def ensure_store_exists(self) -> None:
        """Create or migrate the schema; idempotent and safe to call concurrently."""
        ...

    async def close(self) -> None:
        """Release connections and resources; idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
