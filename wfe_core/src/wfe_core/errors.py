"""The error types of wfe.

Every provider raises these, never a driver's own exception, so that code written
against one store behaves the same against another. All of them derive from
:class:`WfeError`.
"""

from __future__ import annotations

__all__ = [
    "CapabilityNotSupported",
    "ConcurrencyError",
    "ControlPending",
    "DefinitionError",
    "DuplicateEventId",
    "DuplicateIdempotencyKey",
    "EventIdConflict",
    "EventNotFound",
    "IdempotencyKeyConflict",
    "LeaseLost",
    "NotFoundError",
    "ProviderNotFound",
    "ProviderUnavailable",
    "SerializationError",
    "StepTimeout",
    "SubscriptionNotFound",
    "TokenMismatch",
    "WfeError",
    "WorkflowNotFound",
    "WorkflowNotRegistered",
    "WorkflowTerminated",
]


class WfeError(Exception):
    """Base class of every error wfe raises on purpose."""


class NotFoundError(WfeError, LookupError):
    """Something looked up by id does not exist in the store."""


class WorkflowNotFound(NotFoundError):
    """No workflow instance with this id exists in the store."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow instance {workflow_id!r} does not exist in the store")
        self.workflow_id = workflow_id


class EventNotFound(NotFoundError):
    """No event with this id exists in the store."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id!r} does not exist in the store")
        self.event_id = event_id


class SubscriptionNotFound(NotFoundError):
    """No live subscription with this id exists (never created, or terminated)."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(
            f"event subscription {subscription_id!r} does not exist "
            "(it was never created or has been terminated)"
        )
        self.subscription_id = subscription_id


class TokenMismatch(WfeError):
    """The token presented for a subscription is not the one it holds."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(
            f"subscription {subscription_id!r} is not held by the token presented "
            "(it was released, expired and reclaimed, or never claimed with this token)"
        )
        self.subscription_id = subscription_id


class ConcurrencyError(WfeError):
    """A persist lost an optimistic-concurrency race: the stored revision moved on."""

    def __init__(self, workflow_id: str, expected_revision: int) -> None:
        super().__init__(
            f"workflow instance {workflow_id!r} was changed by someone else: it is no "
            f"longer at revision {expected_revision}; reload it and try again"
        )
        self.workflow_id = workflow_id
        self.expected_revision = expected_revision


class LeaseLost(ConcurrencyError):
    """A checkpoint was refused because the writer does not hold a live claim on the
    instance (its lease expired or another host claimed it), or because another host
    holds one. Nothing was written; the writer must stop working on the instance."""

    def __init__(self, workflow_id: str, owner: str | None) -> None:
        WfeError.__init__(
            self,
            f"workflow instance {workflow_id!r}: "
            + (
                f"the claim of {owner!r} is lost or expired"
                if owner is not None
                else "another host holds a live claim on it"
            )
            + "; nothing was written",
        )
        self.workflow_id = workflow_id
        self.expected_revision = -1
        self.owner = owner


class ControlPending(ConcurrencyError):
    """A checkpoint by the holder was refused because a suspend / resume / terminate
    request is pending for the instance: the holder applies it (persisting with
    ``apply_control=True``) instead of carrying on. Nothing was written."""

    def __init__(self, workflow_id: str, action: str | None) -> None:
        WfeError.__init__(
            self,
            f"workflow instance {workflow_id!r} has a pending {action or 'control'} request; "
            "apply it before writing anything else",
        )
        self.workflow_id = workflow_id
        self.expected_revision = -1
        self.action = action


class DuplicateIdempotencyKey(ConcurrencyError):
    """``create_workflow`` refused an instance because another instance of the same
    workflow definition already holds its idempotency key (nothing was written);
    ``existing_id`` is that instance's id."""

    def __init__(self, definition_id: str, idempotency_key: str, existing_id: str) -> None:
        WfeError.__init__(
            self,
            f"workflow definition {definition_id!r} already has instance {existing_id!r} "
            f"with idempotency key {idempotency_key!r}; nothing was written",
        )
        self.workflow_id = existing_id
        self.expected_revision = 0
        self.definition_id = definition_id
        self.idempotency_key = idempotency_key
        self.existing_id = existing_id


class IdempotencyKeyConflict(WfeError, ValueError):
    """``start_workflow`` was given an idempotency key that an existing instance of the
    definition holds, but with other data or another version: that is a different
    request reusing the key, so nothing was started. ``existing_id`` names the
    instance holding the key."""

    def __init__(
        self, definition_id: str, idempotency_key: str, existing_id: str, difference: str
    ) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} of workflow {definition_id!r} belongs to "
            f"instance {existing_id!r}, started with {difference}; nothing was started. "
            "Use a new key for a different request, or the same data to get that instance"
        )
        self.definition_id = definition_id
        self.idempotency_key = idempotency_key
        self.existing_id = existing_id


class DuplicateEventId(WfeError, ValueError):
    """``create_event`` refused an event because one with the same id is stored
    already (nothing was written). A ``ValueError`` too, as stores raised before."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"an event with id {event_id!r} already exists; nothing was written")
        self.event_id = event_id


class EventIdConflict(WfeError, ValueError):
    """``publish_event`` was given an ``event_id`` that a stored event with another
    name or key already has: a different event reusing the id, so nothing was
    published."""

    def __init__(self, event_id: str, stored: tuple[str, str], given: tuple[str, str]) -> None:
        super().__init__(
            f"event id {event_id!r} belongs to the event {stored[0]!r} with key {stored[1]!r}, "
            f"not {given[0]!r} with key {given[1]!r}; nothing was published. "
            "Use a new event id for a different event"
        )
        self.event_id = event_id


class CapabilityNotSupported(WfeError, NotImplementedError):
    """An optional capability was used on a provider that does not declare it."""

    def __init__(self, capability: object, provider: object) -> None:
        name = getattr(capability, "name", str(capability))
        super().__init__(
            f"{type(provider).__name__} does not support the optional capability "
            f"{name}; check `provider.capabilities` before using it"
        )
        self.capability = capability


class ProviderUnavailable(WfeError):
    """The store or service behind a provider cannot be reached or used."""


class ProviderNotFound(WfeError, LookupError):
    """No installed package provides a store for this URL scheme."""


class SerializationError(WfeError, TypeError):
    """A value cannot be stored faithfully, or a stored value cannot be restored.

    ``path`` names the offending field, e.g. ``data.items[2].price``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class DefinitionError(WfeError, ValueError):
    """A workflow definition is invalid (named step, and what is wrong with it)."""


class StepTimeout(WfeError, TimeoutError):
    """A step ran longer than its ``.timeout(...)``: its ``context.cancelled`` fired and
    the step failed with this error, which its error policy handles like any other
    (retry, suspend, terminate, compensate)."""

    def __init__(self, step: str, timeout: float) -> None:
        super().__init__(f"{step} did not finish within its timeout of {timeout:g}s")
        self.step = step
        self.timeout = timeout


class WorkflowNotRegistered(WfeError, LookupError):
    """No workflow definition with this id (and version) is registered on the host."""

    def __init__(self, definition_id: str, version: int | None = None) -> None:
        what = repr(definition_id) if version is None else f"{definition_id!r} version {version}"
        super().__init__(
            f"workflow definition {what} is not registered on this host; "
            "call host.register_workflow(...) first"
        )
        self.definition_id = definition_id
        self.version = version


class WorkflowTerminated(WfeError):
    """A workflow whose result was asked for ended TERMINATED, not COMPLETE (it was
    terminated, or an error policy ended it): ``instance`` is the ended instance."""

    def __init__(self, instance: object, workflow_id: str) -> None:
        super().__init__(
            f"workflow {workflow_id} was terminated; it has no result "
            "(see `wfe show ID` or client.get_errors(ID) for why)"
        )
        self.workflow_id = workflow_id
        self.instance = instance
