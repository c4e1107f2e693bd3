"""Typed sample data and model builders for the conformance suites.

The sample types cover what DESIGN §2 promises to round-trip through every store:
nested dataclasses (one of them frozen), an :class:`~enum.Enum`, a
:class:`~decimal.Decimal` with 18 places, aware ``datetime``\\ s, ``UUID``\\ s, lists,
dicts and optional fields both ``None`` and set. They are registered with the
serializer when this module is imported.

The builders fill *every* field of a model with a non-default value, so a provider that
drops or mangles any field fails the round-trip tests. Each builder takes keyword
overrides for the fields a test cares about.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionPointer,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider
from wfe_core.serialization import register_type

__all__ = [
    "BASE_TIME",
    "FAR_FUTURE",
    "FAR_PAST",
    "PRECISE_AMOUNT",
    "PRECISE_AMOUNT_TEXT",
    "SampleAddress",
    "SampleCustomer",
    "SampleLine",
    "SampleOrder",
    "SamplePriority",
    "SampleProgress",
    "assert_aware_utc",
    "assert_refused_as_naive",
    "assert_same",
    "create_sample",
    "make_event",
    "make_instance",
    "make_pointer",
    "make_subscription",
    "model_differences",
    "sample_data",
    "sample_progress",
    "snapshot_at",
]

BASE_TIME = datetime(2024, 3, 5, 10, 20, 30, 123456, tzinfo=UTC)
"""A fixed aware UTC instant (with microseconds) the builders derive their times from."""

PRECISE_AMOUNT_TEXT = "12345.678901234567890123"
"""A decimal with 18 places: a float cannot hold it."""

PRECISE_AMOUNT = Decimal(PRECISE_AMOUNT_TEXT)
""":data:`PRECISE_AMOUNT_TEXT` as a :class:`~decimal.Decimal`."""


class SamplePriority(enum.Enum):
    """An enum stored inside workflow data."""

    LOW = "low"
    HIGH = "high"
    URGENT = "urgent"


@dataclass(frozen=True)
class SampleAddress:
    """A frozen dataclass nested two levels deep."""

    street: str
    city: str
    postcode: str | None = None


@dataclass
class SampleCustomer:
    """A nested dataclass holding a UUID and another dataclass."""

    customer_id: UUID
    name: str
    address: SampleAddress
    vip: bool = False


@dataclass
class SampleLine:
    """One order line: a list element with a Decimal in it."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass
class SampleOrder:
    """The rich root of the sample workflow data."""

    order_id: UUID
    customer: SampleCustomer
    priority: SamplePriority
    total: Decimal
    placed_at: datetime
    lines: list[SampleLine] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    ratio: float = 0.0
    note: str | None = None
    discount: Decimal | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None


@dataclass
class SampleProgress:
    """Typed step state, used as a pointer's ``persistence_data`` and event payloads."""

    attempt: int
    cursor: Decimal
    seen: list[UUID] = field(default_factory=list)
    last_seen_at: datetime | None = None


register_type(
    SamplePriority, SampleAddress, SampleCustomer, SampleLine, SampleOrder, SampleProgress
)


def sample_data() -> SampleOrder:
    """A fresh, rich :class:`SampleOrder`: every kind of value the stores must keep.

    ``note`` and ``discount`` are set, ``delivered_at`` is left ``None`` so that both
    sides of an optional field are exercised.
    """
    return SampleOrder(
        order_id=UUID("6f1c8f0e-3d5b-4c1a-9a77-2b8de2c4a901"),
        customer=SampleCustomer(
            customer_id=UUID("0b9e4c9a-5b1e-4f5e-8a3c-91d1f0c3e7d2"),
            name="Zoë Ångström",
            address=SampleAddress(street="1 Rue de l'Église", city="Zürich", postcode=None),
            vip=True,
        ),
        priority=SamplePriority.HIGH,
        total=PRECISE_AMOUNT,
        placed_at=BASE_TIME,
        lines=[
            SampleLine(sku="A-1", quantity=2, unit_price=Decimal("0.000000000000000001")),
            SampleLine(
                sku="B-2",
                quantity=-3,
                unit_price=Decimal("98765432109876543210.123456789012345678"),
            ),
            SampleLine(sku="C-3", quantity=0, unit_price=Decimal("-7.100000000000000000")),
        ],
        tags={"channel": "web", "": "empty key", "emoji": "\U0001f680"},
        counters={"retries": 3, "zero": 0, "big": 2**53 + 1},
        ratio=0.1,
        note="fragile",
        discount=Decimal("-0.000000000000000010"),
        shipped_at=BASE_TIME + timedelta(days=1, microseconds=7),
        delivered_at=None,
    )


def sample_progress(attempt: int = 2) -> SampleProgress:
    """A fresh :class:`SampleProgress` (typed step state)."""
    return SampleProgress(
        attempt=attempt,
        cursor=Decimal("0.123456789012345678"),
        seen=[UUID("11111111-2222-4333-8444-555555555555"), UUID(int=0)],
        last_seen_at=BASE_TIME - timedelta(hours=3, microseconds=1),
    )


def make_pointer(**overrides: Any) -> ExecutionPointer:
    """An execution pointer with every field set to a non-default value.

    ``children`` and ``scope`` get fresh ids (``scope`` innermost first); pass
    overrides to link pointers together or to set what a test checks.
    """
    values: dict[str, Any] = {
        "id": new_id(),
        "step_id": 7,
        "step_name": "charge card",
        "active": False,
        "status": PointerStatus.WAITING_FOR_EVENT,
        "sleep_until": BASE_TIME + timedelta(minutes=5, microseconds=11),
        "persistence_data": sample_progress(),
        "start_time": BASE_TIME + timedelta(seconds=1, microseconds=1),
        "end_time": BASE_TIME + timedelta(seconds=2, microseconds=2),
        "event_name": "payment.received",
        "event_key": "order-42",
        "event_published": True,
        "event_data": sample_progress(attempt=9),
        "retry_count": 4,
        "children": [new_id(), new_id(), new_id()],
        "context_item": {"item": SamplePriority.URGENT, "index": 3, "price": PRECISE_AMOUNT},
        "predecessor_id": new_id(),
        "outcome": "approved",
        "scope": [new_id(), new_id()],
        "extension_attributes": {
            "attempts": [1, 2, {"nested": {"deep": [None, True, 1.5, "x"]}}],
            "owner": {"team": "billing", "since": BASE_TIME, "quota": Decimal("1.50")},
            "flag": False,
        },
    }
    values.update(overrides)
    return ExecutionPointer(**values)


def make_instance(*, pointers: int = 3, **overrides: Any) -> WorkflowInstance:
    """A workflow instance with every field set to a non-default value.

    ``id`` defaults to ``""`` (the store assigns one) and ``revision`` to 0 (the store
    sets it). The instance gets ``pointers`` linked pointers (the first is the container
    of the others) unless ``execution_pointers`` is given. Times are distinct aware UTC
    instants with microseconds.
    """
    built: list[ExecutionPointer] = []
    if pointers:
        container = make_pointer(step_id=1, step_name="container", scope=[])
        built.append(container)
        for n in range(1, pointers):
            built.append(
                make_pointer(
                    step_id=1 + n,
                    step_name=f"child {n}",
                    scope=[container.id, *make_pointer().scope],
                    predecessor_id=built[-1].id,
                    children=[],
                )
            )
        container.children = [p.id for p in built[1:]]
    values: dict[str, Any] = {
        "workflow_definition_id": f"def-{new_id()}",
        "version": 3,
        "id": "",
        "description": "an order to ship",
        "reference": f"ref-{new_id()}",
        "idempotency_key": f"key-{new_id()}",
        "status": WorkflowStatus.SUSPENDED,
        "data": sample_data(),
        "execution_pointers": built,
        "next_execution": BASE_TIME + timedelta(minutes=1, microseconds=3),
        "create_time": BASE_TIME - timedelta(days=1, microseconds=5),
        "complete_time": BASE_TIME + timedelta(hours=1, microseconds=9),
        "revision": 0,
    }
    values.update(overrides)
    return WorkflowInstance(**values)


def snapshot_at(instance: WorkflowInstance, revision: int) -> WorkflowInstance:
    """A snapshot of ``instance`` as the store should hold it at ``revision``."""
    snapshot = copy.deepcopy(instance)
    snapshot.revision = revision
    return snapshot


async def create_sample(provider: PersistenceProvider, **overrides: Any) -> WorkflowInstance:
    """Create a full sample instance (:func:`make_instance` with ``overrides``) and
    return the caller's object (id written back)."""
    instance = make_instance(**overrides)
    await provider.create_workflow(instance)
    return instance


def make_subscription(**overrides: Any) -> EventSubscription:
    """An event subscription with every field set to a non-default value except the
    claim (``external_*`` stay ``None`` unless overridden) and ``id`` (``""``)."""
    values: dict[str, Any] = {
        "workflow_id": new_id(),
        "step_id": 5,
        "execution_pointer_id": new_id(),
        "event_name": "payment.received",
        "event_key": f"order-{new_id()}",
        "subscribe_as_of": BASE_TIME - timedelta(minutes=10, microseconds=13),
        "subscription_data": sample_progress(attempt=1),
        "id": "",
    }
    values.update(overrides)
    return EventSubscription(**values)


def make_event(**overrides: Any) -> Event:
    """An event with typed data and an aware time with microseconds; ``id`` is ``""``
    and ``is_processed`` False unless overridden."""
    values: dict[str, Any] = {
        "event_name": "payment.received",
        "event_key": f"order-{new_id()}",
        "event_data": sample_data(),
        "event_time": BASE_TIME - timedelta(minutes=1, microseconds=17),
        "id": "",
        "is_processed": False,
        "headers": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    }
    values.update(overrides)
    return Event(**values)


FAR_FUTURE = datetime(3000, 1, 1, tzinfo=UTC)
"""An aware instant later than anything the suites store."""

FAR_PAST = datetime(1971, 1, 1, tzinfo=UTC)
"""An aware instant earlier than anything the suites store."""


def assert_aware_utc(value: datetime | None, what: str) -> None:
    """Fail unless ``value`` is a timezone-aware datetime at UTC offset zero."""
    assert isinstance(value, datetime), f"{what}: expected a datetime, got {value!r}"
    assert value.tzinfo is not None, f"{what}: naive datetime {value!r} (must be aware UTC)"
    assert value.utcoffset() == timedelta(0), f"{what}: {value!r} is not at UTC offset 0"


def model_differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """The fields in which two model objects (or pointer lists) differ, for messages."""
    if isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return [f"{path}: {len(actual)} items, expected {len(expected)}"]
        out: list[str] = []
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            out.extend(model_differences(a, e, f"{path}[{n}]"))
        return out
    names = getattr(type(expected), "__dataclass_fields__", None)
    if names is None or type(actual) is not type(expected):
        return [] if actual == expected else [f"{path}: {actual!r} != expected {expected!r}"]
    out = []
    for name in names:
        a, e = getattr(actual, name), getattr(expected, name)
        if name == "execution_pointers":
            out.extend(model_differences(list(a), list(e), f"{path}.{name}"))
        elif a != e or type(a) is not type(e):
            out.append(f"{path}.{name}: {a!r} != expected {e!r}")
    return out


def assert_same(actual: Any, expected: Any, what: str) -> None:
    """Fail with a field-by-field message unless two model objects are equal."""
    problems = model_differences(actual, expected, what)
    assert not problems, "\n".join(problems)
    assert actual == expected, f"{what} differs"


async def assert_refused_as_naive(call: Awaitable[object], what: str) -> None:
    """Await ``call`` and fail unless it raised ``ValueError`` (a naive datetime refused)."""
    try:
        await call
    except ValueError:
        return
    raise AssertionError(f"{what}: a naive datetime was accepted (expected ValueError)")
