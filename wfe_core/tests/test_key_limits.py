"""The text limits every store keeps (``wfe_core.persistence``), and where the engine
applies them: ``ExecutionResult.wait_for_event`` (inside the step) and
``WorkflowHost.publish_event`` (before storing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from wfe_core.models import Event, EventSubscription, WorkflowInstance
from wfe_core.persistence import (
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    check_event_text,
    check_id,
    check_instance_text,
    check_key,
    check_subscription_text,
    check_text,
    storable_key,
)

from wfe_core import ExecutionResult, WorkflowHost


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_limits_match_the_sql_columns() -> None:
    schema = pytest.importorskip("wfe_sql.schema")
    events, subscriptions, workflows = schema.events, schema.subscriptions, schema.workflows

    assert events.c.event_key.type.length == MAX_KEY_LENGTH
    assert subscriptions.c.event_name.type.length == MAX_KEY_LENGTH
    assert workflows.c.reference.type.length == MAX_KEY_LENGTH
    assert workflows.c.id.type.length == MAX_ID_LENGTH


@pytest.mark.parametrize(
    "value",
    ["", "k" * MAX_KEY_LENGTH, "🚀" * MAX_KEY_LENGTH, "é€字 key\twith\nwhitespace"],
)
def test_storable_keys_pass(value: str) -> None:
    check_key(value, "event key")
    assert storable_key(value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("k" * (MAX_KEY_LENGTH + 1), "401 characters long; the limit is 400 characters"),
        ("🚀" * (MAX_KEY_LENGTH + 1), "the limit is 400 characters"),
        ("a\x00b", "NUL"),
        ("a\ud800b", "surrogate"),
    ],
)
def test_unstorable_keys_raise_value_error_naming_the_field(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="event key") as raised:
        check_key(value, "event key")
    assert fragment in str(raised.value)
    assert not storable_key(value)


def test_non_strings_raise_type_error_and_none_passes_only_when_optional() -> None:
    with pytest.raises(TypeError, match="reference must be a string, not int"):
        check_key(7, "reference")
    with pytest.raises(TypeError):
        check_key(None, "reference")
    check_key(None, "reference", optional=True)
    assert not storable_key(None)


def test_ids_and_unlimited_text() -> None:
    check_id("i" * MAX_ID_LENGTH, "id")
    with pytest.raises(ValueError, match="the limit is 200"):
        check_id("i" * (MAX_ID_LENGTH + 1), "id")
    check_text("d" * 100_000, "description", None)
    with pytest.raises(ValueError, match="description contains a NUL"):
        check_text("d\x00", "description", None)


def test_model_checks_name_the_field() -> None:
    long = "x" * (MAX_KEY_LENGTH + 1)
    with pytest.raises(ValueError, match=r"^instance\.reference is 401"):
        check_instance_text(WorkflowInstance(workflow_definition_id="d", reference=long))
    with pytest.raises(ValueError, match=r"^instance\.description contains a NUL"):
        check_instance_text(WorkflowInstance(workflow_definition_id="d", description="\x00"))
    with pytest.raises(ValueError, match=r"^subs\[0\]\.event_key is 401"):
        check_subscription_text(
            EventSubscription(
                workflow_id="w",
                step_id=0,
                execution_pointer_id="p",
                event_name="n",
                event_key=long,
            ),
            "subs[0]",
        )
    with pytest.raises(ValueError, match=r"^event\.event_name contains a NUL"):
        check_event_text(Event(event_name="a\x00", event_key="k"))
    check_instance_text(WorkflowInstance(workflow_definition_id="d" * MAX_KEY_LENGTH))


def test_wait_for_event_refuses_unstorable_keys_inside_the_step() -> None:
    ok = ExecutionResult.wait_for_event("paid", "k" * MAX_KEY_LENGTH)
    assert ok.event_key == "k" * MAX_KEY_LENGTH
    with pytest.raises(ValueError, match="event key is 401 characters long"):
        ExecutionResult.wait_for_event("paid", "k" * (MAX_KEY_LENGTH + 1))
    with pytest.raises(ValueError, match="event name contains a NUL"):
        ExecutionResult.wait_for_event("pa\x00id", "k")
    with pytest.raises(ValueError, match="event key"):
        ExecutionResult.wait_for_activity("a" * (MAX_KEY_LENGTH + 1))


@pytest.mark.anyio
async def test_publish_event_refuses_before_storing() -> None:
    from wfe_memory import MemoryPersistenceProvider

    async with MemoryPersistenceProvider() as store:
        host = WorkflowHost(store)
        with pytest.raises(ValueError, match="event key is 401 characters long"):
            await host.publish_event("paid", "k" * (MAX_KEY_LENGTH + 1))
        with pytest.raises(ValueError, match="event name contains a NUL"):
            await host.publish_event("pa\x00id", "k")
        assert await store.get_runnable_events(datetime(3000, 1, 1, tzinfo=UTC)) == []
