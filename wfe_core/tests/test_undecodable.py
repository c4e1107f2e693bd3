"""Undecodable stored data: read without failing, written back verbatim.

Every serializer here has its own :class:`TypeRegistry`, so nothing is registered in
the process-wide default one.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from decimal import Decimal

import orjson
import pytest
from wfe_core.errors import SerializationError
from wfe_core.models import ExecutionPointer, PointerList, WorkflowInstance
from wfe_core.serialization import (
    Serializer,
    TypeRegistry,
    Undecodable,
    has_undecodable,
    undecodable_fields,
)


@dataclass
class Parcel:
    """A type only the writer registers."""

    weight: Decimal
    label: str = ""


def _writer() -> Serializer:
    serializer = Serializer(TypeRegistry())
    serializer.register(Parcel)
    return serializer


def _reader() -> Serializer:
    return Serializer(TypeRegistry())


def test_unregistered_type_reads_as_undecodable_with_raw_text_and_reason() -> None:
    """A stored value naming an unregistered type comes back as Undecodable: the exact
    stored text and a reason naming the field and the type."""
    text = _writer().dumps({"parcel": Parcel(Decimal("1.50"), "box")})
    got = _reader().loads_or_undecodable(text, "data")
    assert isinstance(got, Undecodable)
    assert got.raw == text
    assert "Parcel" in got.reason
    assert "not registered" in got.reason
    assert got.reason.startswith('data["parcel"]')
    with pytest.raises(SerializationError):
        _reader().loads(text)


def test_undecodable_encodes_back_verbatim() -> None:
    """dumps of an Undecodable returns its raw text unchanged; to_primitive gives the
    stored form, also when nested; once the type is known the value decodes."""
    text = _writer().dumps(Parcel(Decimal("2.000"), "crate"))
    reader = _reader()
    got = reader.loads_or_undecodable(text)
    assert isinstance(got, Undecodable)
    assert reader.dumps(got) == text
    assert reader.to_primitive(got) == orjson.loads(text)
    nested = reader.dumps({"kept": [got]})
    assert orjson.loads(nested) == {"kept": [orjson.loads(text)]}
    reader.register(Parcel)
    assert reader.loads(reader.dumps(got)) == Parcel(Decimal("2.000"), "crate")


def test_from_primitive_or_undecodable() -> None:
    """The primitive form (as the memory store keeps it) reads as Undecodable whose raw
    is the JSON text of that form, and encodes back to the same form."""
    primitive = _writer().to_primitive([Parcel(Decimal("3"))], "event_data")
    reader = _reader()
    got = reader.from_primitive_or_undecodable(primitive, "event_data")
    assert isinstance(got, Undecodable)
    assert orjson.loads(got.raw) == primitive
    assert got.reason.startswith("event_data[0]")
    assert reader.to_primitive(got) == primitive


def test_decodable_values_are_returned_as_themselves() -> None:
    """Data that decodes is returned as the value, never wrapped."""
    reader = _reader()
    text = reader.dumps({"n": Decimal("1.25"), "t": (1, 2)})
    assert reader.loads_or_undecodable(text) == {"n": Decimal("1.25"), "t": (1, 2)}
    assert reader.from_primitive_or_undecodable(None) is None


def test_type_mismatch_reads_as_undecodable() -> None:
    """A tag registered here for a different kind of type (an Enum where a dataclass was
    stored) reads as Undecodable too."""
    text = _writer().dumps(Parcel(Decimal("1")))

    class Impostor(enum.Enum):
        A = 1

    Impostor.__module__ = Parcel.__module__
    Impostor.__qualname__ = Parcel.__qualname__
    reader = _reader()
    reader.register(Impostor)
    got = reader.loads_or_undecodable(text)
    assert isinstance(got, Undecodable)
    assert "not a dataclass" in got.reason
    assert reader.dumps(got) == text


def test_malformed_stored_text_reads_as_undecodable() -> None:
    """Text that is not JSON, or a tagged form of an unknown kind, is Undecodable and
    its raw text is written back unchanged."""
    reader = _reader()
    for text in ('{"broken": ', '{"$wfe": "from-the-future", "v": 1}'):
        got = reader.loads_or_undecodable(text)
        assert isinstance(got, Undecodable)
        assert reader.dumps(got) == text


def test_undecodable_is_immutable_with_a_short_repr() -> None:
    """Undecodable is a frozen value; its repr shows the reason and a shortened raw."""
    value = Undecodable("x" * 500, "because")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.raw = "other"  # type: ignore[misc]
    assert "because" in repr(value)
    assert len(repr(value)) < 200
    assert value == Undecodable("x" * 500, "because")


def test_has_undecodable_finds_data_then_pointer_fields() -> None:
    """has_undecodable returns the first reason (data, then pointers in order);
    undecodable_fields lists them all with the pointer ids."""
    pointer = ExecutionPointer(step_id=0, outcome=Undecodable("1", "outcome reason"))
    other = ExecutionPointer(step_id=1, context_item=Undecodable("2", "item reason"))
    instance = WorkflowInstance("wf", execution_pointers=PointerList([pointer, other]))
    assert has_undecodable(instance) == "outcome reason"
    instance.data = Undecodable("{}", "data reason")
    assert has_undecodable(instance) == "data reason"
    assert [(f, p) for f, p, _ in undecodable_fields(instance)] == [
        ("data", None),
        (f"execution_pointers[{pointer.id!r}].outcome", pointer.id),
        (f"execution_pointers[{other.id!r}].context_item", other.id),
    ]
    assert has_undecodable(WorkflowInstance("wf", data={"ok": 1})) is None
