"""The persistence contract: the repository protocols every store implements.

Every method is a coroutine and raises only :mod:`wfe_core.errors` types. A provider
returns copies: mutating an object it handed out never changes the store, and an
object handed in may be changed by the caller afterwards without effect. Times are
timezone-aware UTC datetimes; naive datetimes are refused with ``ValueError``.

The conformance suite (:mod:`wfe_conformance`) pins down each of these semantics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
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
    "CommandHandler",
    "ErrorRepository",
    "EventRepository",
    "PersistenceProvider",
    "ScheduledCommandRepository",
    "SubscriptionRepository",
    "WorkflowRepository",
    "check_aware",
    "check_non_negative",
    "id_list",
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


@runtime_checkable
class WorkflowRepository(Protocol):
    """Stores workflow instances and their execution pointers."""

    async def create_workflow(self, instance: WorkflowInstance) -> str:
        """Insert a new instance with all its pointers and return its id.

        An empty ``instance.id`` is replaced by a new UUID (written back to the
        object); the stored and returned revision is 1. Creating an id that already
        exists raises :class:`~wfe_core.errors.ConcurrencyError`.
        """
        ...

    async def persist_workflow(
        self, instance: WorkflowInstance, subscriptions: Sequence[EventSubscription] = ()
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
        """
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
        """Ids of RUNNABLE instances with ``next_execution <= as_at``, earliest
        ``next_execution`` first, at most ``limit``."""
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
    ) -> list[WorkflowInstance]:
        """Instances matching every filter given, oldest ``create_time`` first (ties by
        id), skipping ``skip`` and returning at most ``take``. ``created_from`` is
        inclusive, ``created_to`` exclusive."""
        ...

    async def purge_workflows(self, status: WorkflowStatus, older_than: datetime) -> int:
        """Delete instances in ``status`` (COMPLETE or TERMINATED) whose
        ``complete_time`` is before ``older_than``, with their pointers, subscriptions
        and errors; return the count. Capability ``PURGE``."""
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
    """Stores published events."""

    async def create_event(self, event: Event) -> str:
        """Insert an event and return its id (assigned when empty, written back)."""
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
        unknown id."""
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
