"""Tests of the type-faithful serializer for workflow data and event data."""

from __future__ import annotations

import builtins
import dataclasses
import enum
import importlib
import json
import math
import socket
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Optional
from zoneinfo import ZoneInfo

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wfe_core.errors import SerializationError
from wfe_core.serialization import (
    JSONValue,
    Serializer,
    TypeRegistry,
    default_serializer,
    register_type,
)

# --------------------------------------------------------------------------- user types


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Perm(enum.Flag):
    R = 1
    W = 2


class Shape(enum.Enum):
    POINT = (0, 0)


@dataclass
class Address:
    street: str
    city: str


@dataclass
class Customer:
    name: str
    address: Address


@dataclass
class Item:
    sku: str
    price: Decimal
    qty: int = 1


@dataclass
class Order:
    id: uuid.UUID
    customer: Customer
    items: list[Item]
    placed_at: datetime
    color: Color = Color.RED
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str = "EUR"


@dataclass
class Computed:
    a: int
    b: int = field(init=False)
    unset: int = field(init=False)

    def __post_init__(self) -> None:
        self.b = self.a * 2


@dataclass(frozen=True, slots=True)
class FrozenComputed:
    a: int
    label: str = field(init=False, default="none")


@dataclass
class Ten:
    f0: int
    f1: str
    f2: float
    f3: bool
    f4: Decimal
    f5: datetime
    f6: list[int]
    f7: dict[str, str]
    f8: uuid.UUID
    f9: Color


@dataclass
class Picky:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


# registry recursion: only Outer is registered explicitly


class InnerKind(enum.Enum):
    A = "a"


@dataclass
class Leaf:
    v: int


@dataclass
class Inner:
    kind: InnerKind
    leaves: list[Leaf]


@dataclass
class Tagged:
    x: int


@dataclass
class Keyed:
    x: int


@dataclass
class InSet:
    x: int


@dataclass(frozen=True)
class InTuple:
    x: int


@dataclass
class Outer:
    inner: Inner
    maybe: Optional[Leaf] = None  # noqa: UP045 - the Optional spelling is under test
    by_key: dict[str, Keyed] = field(default_factory=dict)
    pair: tuple[InTuple, int] | None = None
    annotated: Annotated[Tagged, "meta"] | None = None
    forward: list[InSet] = field(default_factory=list)
    lit: Literal[Priority.HIGH] | None = None


@dataclass
class Node:
    value: int
    children: list[Node] = field(default_factory=list)


class PModelInner(pydantic.BaseModel):
    price: Decimal
    leaf: Leaf | None = None


class PModel(pydantic.BaseModel):
    amount: Decimal
    at: datetime
    inner: PModelInner
    tags: tuple[str, ...] = ()
    anything: Any = None
    color: Color = Color.GREEN


class PFrozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    n: int


class PExtra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    n: int


class PAliased(pydantic.BaseModel):
    value: int = pydantic.Field(alias="Value")


class PRoot(pydantic.RootModel[list[Decimal]]):
    pass


class PCounting(pydantic.BaseModel):
    n: int

    @pydantic.field_validator("n")
    @classmethod
    def bump(cls, n: int) -> int:
        return n + 1


# --------------------------------------------------------------------------- helpers


_MISSING = object()


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down (nan-aware, Decimal digit-exact)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, datetime):
        return bool(
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.utcoffset() == b.utcoffset()
            and a.fold == b.fold
            and (not isinstance(a.tzinfo, ZoneInfo) or a.tzinfo is b.tzinfo)
        )
    if isinstance(a, time):
        return bool(a == b and a.tzinfo == b.tzinfo and a.fold == b.fold)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and all(same(a[k], b[k]) for k in a)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if dataclasses.is_dataclass(a):
        return all(
            same(getattr(a, f.name, _MISSING), getattr(b, f.name, _MISSING))
            for f in dataclasses.fields(a)
        )
    if isinstance(a, pydantic.BaseModel):
        return (
            all(same(getattr(a, n), getattr(b, n)) for n in type(a).model_fields)
            and same(a.__pydantic_extra__, b.__pydantic_extra__)
            and a.model_fields_set == b.model_fields_set
        )
    return bool(a == b)


def fresh() -> Serializer:
    return Serializer(TypeRegistry())


def roundtrip(value: Any, ser: Serializer | None = None) -> Any:
    """Store and load through JSON text, checking the text is standard JSON."""
    ser = ser or fresh()
    text = ser.dumps(value)
    assert isinstance(text, str)
    json.loads(text)  # standard JSON
    via_primitive = ser.from_primitive(json.loads(json.dumps(ser.to_primitive(value))))
    assert same(via_primitive, value)
    return ser.loads(text)


def make_order() -> Order:
    return Order(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        customer=Customer("Ada", Address("1 Main St", "London")),
        items=[
            Item("a", Decimal("1.000000000000000001")),
            Item("b", Decimal("2.50"), 3),
            Item("c", Decimal("-0E-18"), 2),
        ],
        placed_at=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        notes={"gift": True, "ratio": 0.25},
    )


# --------------------------------------------------------------------------- round trips

EDGE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    10**40,
    1.5,
    -0.0,
    1e300,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "plain",
    "é ü 漢字 🎉",
    "nul\x00inside",
    "lone \ud800 surrogate",
    "back\\slash \\x00 not a nul",
    b"",
    b"\x00\xff bytes",
    bytearray(b"mutable"),
    Decimal("1.000000000000000001"),
    Decimal("2.50"),
    Decimal("-0"),
    Decimal("0E-30"),
    Decimal("1E+3"),
    Decimal("123456789012345678901234567890.123456789012345678"),
    Decimal("NaN"),
    Decimal("-sNaN12"),
    Decimal("-Infinity"),
    datetime(2024, 1, 2, 3, 4, 5, 6),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=3, seconds=7))),
    datetime(2024, 1, 2, 3, 4, 5, fold=1),
    date(1999, 12, 31),
    time(23, 59, 59, 999999),
    time(8, 0, tzinfo=timezone(timedelta(hours=-2))),
    timedelta(days=-3, seconds=5, microseconds=7),
    timedelta(0),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    (),
    (1, "a", (2.5, None)),
    [(1, 2), [3, (4,)]],
    set(),
    {1, 2, 3},
    {"b", "a", (1, 2)},
    frozenset({1, frozenset({2})}),
    {},
    {"a": 1, "b": [1, {"c": None}]},
    {1: "int key", 2: "two"},
    {(1, "x"): "tuple key", frozenset({1}): "frozenset key"},
    {None: 1, True: 2, "s": 3},
    {Decimal("2.50"): "decimal key", date(2020, 1, 1): "date key"},
    {Color.RED: "enum key", Mode.FAST: "str enum key"},
    {"nul\x00key": 1},
    {"$wfe": "dataclass", "t": "os.system", "v": {}},
    {"outer": {"$wfe": "tuple", "v": [1]}},
    [{"$wfe": 1}, {"$wfe": None, "x": (1,)}],
    Color.RED,
    Priority.HIGH,
    Mode.FAST,
    Perm.R | Perm.W,
    Shape.POINT,
]


@pytest.mark.parametrize(
    "value", EDGE_VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(EDGE_VALUES)]
)
def test_round_trip_of_every_supported_kind(value: Any) -> None:
    back = roundtrip(value)
    assert same(back, value)


def test_decimal_keeps_digits_and_exponent() -> None:
    for text in ["1.000000000000000001", "2.50", "2.5", "100", "1E+2", "-0.000"]:
        back = roundtrip(Decimal(text))
        assert back == Decimal(text)
        assert back.as_tuple() == Decimal(text).as_tuple()


def test_datetime_awareness_and_offset_preserved() -> None:
    naive = datetime(2024, 6, 1, 9, 0)
    ist = datetime(2024, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    back_naive, back_ist = roundtrip([naive, ist])
    assert back_naive.tzinfo is None
    assert back_naive == naive
    assert back_ist.utcoffset() == timedelta(hours=5, minutes=30)
    assert back_ist == ist
    assert back_ist.hour == 9
    utc = roundtrip(datetime(2024, 6, 1, tzinfo=UTC))
    assert utc.tzinfo is UTC


def test_zoneinfo_datetimes_keep_their_zone() -> None:
    zone = ZoneInfo("Europe/Paris")
    values = [
        datetime(2024, 7, 1, 12, 0, tzinfo=zone),
        datetime(2024, 10, 27, 2, 30, tzinfo=zone, fold=1),  # ambiguous hour, second pass
        datetime(2024, 3, 31, 2, 30, tzinfo=zone),  # wall time that does not exist
    ]
    back = roundtrip(values)
    for b, v in zip(back, values, strict=True):
        assert b.tzinfo is zone
        assert (b.replace(tzinfo=None), b.fold, b.utcoffset()) == (
            v.replace(tzinfo=None),
            v.fold,
            v.utcoffset(),
        )
    t = roundtrip(time(9, 0, tzinfo=zone))
    assert t.tzinfo is zone


def test_unknown_zone_falls_back_to_the_stored_offset() -> None:
    stored: JSONValue = {
        "$wfe": "datetime",
        "v": "2024-01-01T10:00:00+01:00",
        "z": "Nowhere/Atlantis",
    }
    back = fresh().from_primitive(stored)
    assert back.utcoffset() == timedelta(hours=1)
    assert back == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def test_nested_dataclasses_round_trip() -> None:
    order = make_order()
    ser = fresh()
    back = roundtrip(order, ser)
    assert back == order
    assert same(back, order)
    assert type(back.customer.address) is Address
    assert back.items[0].price.as_tuple() == Decimal("1.000000000000000001").as_tuple()


def test_stored_form_is_readable_json() -> None:
    prim = fresh().to_primitive({"a": [1, 2.5, "x", None, True], "b": {"c": {}}})
    assert prim == {"a": [1, 2.5, "x", None, True], "b": {"c": {}}}
    prim = fresh().to_primitive(Address("1 Main St", "London"))
    assert prim == {
        "$wfe": "dataclass",
        "t": f"{__name__}.Address",
        "v": {"street": "1 Main St", "city": "London"},
    }


def test_frozen_dataclass_and_init_false_fields() -> None:
    money = roundtrip(Money(Decimal("10.00")))
    assert money == Money(Decimal("10.00"))
    c = Computed(3)
    c.b = 100  # changed after __post_init__: the stored value wins
    back = roundtrip(c)
    assert (back.a, back.b) == (3, 100)
    assert not hasattr(back, "unset")
    fc = FrozenComputed(1)
    object.__setattr__(fc, "label", "set later")
    back_fc = roundtrip(fc)
    assert back_fc.label == "set later"
    assert roundtrip({Money(Decimal("1.0")): "frozen dataclass as key"}) == {
        Money(Decimal("1.0")): "frozen dataclass as key"
    }


def test_self_referential_dataclass() -> None:
    tree = Node(1, [Node(2), Node(3, [Node(4)])])
    ser = Serializer(TypeRegistry())
    ser.register(Node)
    assert ser.loads(Serializer(TypeRegistry()).dumps(tree)) == tree


def test_dataclass_init_failure_names_the_path() -> None:
    stored: JSONValue = {"list": [{"$wfe": "dataclass", "t": f"{__name__}.Picky", "v": {"n": -1}}]}
    ser = fresh()
    ser.register(Picky)
    with pytest.raises(SerializationError, match="n must not be negative") as info:
        ser.from_primitive(stored)
    assert info.value.path == 'data["list"][0]'


def test_dataclass_missing_required_field_is_refused() -> None:
    ser = fresh()
    ser.register(Item)
    stored: JSONValue = {"$wfe": "dataclass", "t": f"{__name__}.Item", "v": {"sku": "x"}}
    with pytest.raises(SerializationError, match="price"):
        ser.from_primitive(stored)


def test_enums_round_trip_with_their_type() -> None:
    for member in [Color.GREEN, Priority.LOW, Mode.FAST, Perm.W, Perm.R | Perm.W, Shape.POINT]:
        back = roundtrip(member)
        assert back is member or back == member
        assert type(back) is type(member)


def test_pydantic_models_keep_field_types() -> None:
    model = PModel(
        amount=Decimal("1.000000000000000001"),
        at=datetime(2024, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=2))),
        inner=PModelInner(price=Decimal("2.50"), leaf=Leaf(1)),
        tags=("a", "b"),
        anything={"nested": Leaf(5), "when": date(2024, 2, 2)},
    )
    back = roundtrip(model)
    assert back == model
    assert type(back.amount) is Decimal
    assert back.amount.as_tuple() == model.amount.as_tuple()
    assert back.at.utcoffset() == timedelta(hours=2)
    assert type(back.inner) is PModelInner
    assert type(back.inner.leaf) is Leaf
    assert back.anything["nested"] == Leaf(5)
    assert back.color is Color.GREEN
    assert back.model_fields_set == model.model_fields_set


def test_pydantic_variants() -> None:
    assert roundtrip(PFrozen(n=1)) == PFrozen(n=1)
    extra = PExtra(n=1, other=Decimal("3.30"))  # type: ignore[call-arg]
    back = roundtrip(extra)
    assert back.__pydantic_extra__ == {"other": Decimal("3.30")}
    assert back.model_extra is not None
    assert type(back.model_extra["other"]) is Decimal
    assert roundtrip(PAliased(Value=4)).value == 4
    root = PRoot([Decimal("1.10"), Decimal("2")])
    back_root = roundtrip(root)
    assert back_root.root == [Decimal("1.10"), Decimal("2")]
    assert type(back_root) is PRoot


def test_pydantic_validators_are_not_rerun_on_load() -> None:
    model = PCounting(n=1)
    assert model.n == 2
    assert roundtrip(model).n == 2


def test_pydantic_missing_required_field_is_refused() -> None:
    ser = fresh()
    ser.register(PFrozen)
    with pytest.raises(SerializationError, match="lacks the required field"):
        ser.from_primitive({"$wfe": "pydantic", "t": f"{__name__}.PFrozen", "v": {}})


def test_dict_key_types_round_trip() -> None:
    value = {1: "a", 2: {(3, 4): [5]}, "s": {uuid.UUID(int=1): None}}
    back = roundtrip(value)
    assert back == value
    assert list(back) == [1, 2, "s"]
    assert list(back[2]) == [(3, 4)]


def test_user_dict_with_wfe_key_is_escaped() -> None:
    crafted = {"$wfe": "dataclass", "t": f"{__name__}.Address", "v": {"street": "x"}}
    ser = fresh()
    ser.register(Address)
    prim = ser.to_primitive({"payload": crafted})
    assert prim != {"payload": crafted}
    assert ser.from_primitive(prim) == {"payload": crafted}
    assert ser.loads(ser.dumps(crafted)) == crafted


def test_copy_is_a_faithful_deep_copy() -> None:
    order = make_order()
    dup = fresh().copy(order)
    assert dup == order
    assert dup is not order
    assert dup.items is not order.items
    dup.items[0].qty = 99
    assert order.items[0].qty == 1


# --------------------------------------------------------------------------- dumps / loads


def test_dumps_returns_str_json_and_loads_accepts_str_and_bytes() -> None:
    ser = fresh()
    text = ser.dumps({"a": Decimal("1.5"), "b": [1, 2]})
    assert isinstance(text, str)
    assert json.loads(text) == {"a": {"$wfe": "decimal", "v": "1.5"}, "b": [1, 2]}
    assert ser.loads(text) == {"a": Decimal("1.5"), "b": [1, 2]}
    assert ser.loads(text.encode()) == {"a": Decimal("1.5"), "b": [1, 2]}
    assert "NaN" not in ser.dumps(float("nan"))  # strict JSON, no NaN literal


def test_loads_refuses_invalid_json() -> None:
    with pytest.raises(SerializationError, match="not valid JSON"):
        fresh().loads("{not json")


def test_very_deep_nesting_still_round_trips() -> None:
    value: Any = "leaf"
    for _ in range(400):  # beyond orjson's own nesting limit
        value = [value]
    ser = fresh()
    assert ser.loads(ser.dumps(value)) == value


def test_reference_cycle_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="cycle"):
        fresh().to_primitive(loop)


# --------------------------------------------------------------------------- refusal paths


def _gen() -> Any:
    yield 1


async def _coro() -> None:
    return None


@dataclass
class Holder:
    items: list[Any]
    customer: Any = None


def test_refusal_names_the_list_and_field_path() -> None:
    items = [Item("a", Decimal(1)), Item("b", Decimal(2)), Item("c", lambda: 0)]  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="function") as info:
        fresh().to_primitive(Holder(items))
    assert info.value.path == "data.items[2].price"
    assert str(info.value).startswith("data.items[2].price: ")


def test_refusal_names_a_dict_key_path() -> None:
    with pytest.raises(SerializationError) as info:
        fresh().to_primitive({"ok": 1, "key": object()})
    assert info.value.path == 'data["key"]'
    with pytest.raises(SerializationError) as info:
        fresh().to_primitive({"a": {'we"ird': [0, object()]}})
    assert info.value.path == 'data["a"]["we\\"ird"][1]'


def test_refusal_names_a_nested_attribute_path() -> None:
    holder = Holder([], customer=Customer("Ada", object()))  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="object") as info:
        fresh().to_primitive(holder, path="workflow.data")
    assert info.value.path == "workflow.data.customer.address"


@pytest.mark.parametrize(
    ("make", "path", "message"),
    [
        (lambda: {"gen": _gen()}, 'data["gen"]', "generator"),
        (lambda: [1, {"x": (1, object())}], 'data[1]["x"][1]', "object"),
        (lambda: {"tags": {1, print}}, 'data["tags"]{...}', "builtin_function"),
        (lambda: {1.5: "x"}, "data[1.5]", "float key"),
        (lambda: {1: {object(): 1}}, "data[1][<object object", "dict key"),
        (lambda: Holder([{1: [type]}]), "data.items[0][1][0]", "type"),
        (lambda: PModelInner.model_construct(price=object()), "data.price", "object"),
        (lambda: {"p": pydantic}, 'data["p"]', "module"),
        (lambda: [sys.stdout], "data[0]", "cannot store"),
    ],
)
def test_refusal_paths(make: Any, path: str, message: str) -> None:
    with pytest.raises(SerializationError, match=message) as info:
        fresh().to_primitive(make())
    assert info.value.path.startswith(path)


def test_refusal_of_a_coroutine_and_a_socket() -> None:
    coro = _coro()
    try:
        with pytest.raises(SerializationError, match="await") as info:
            fresh().dumps({"c": coro})
        assert info.value.path == 'data["c"]'
    finally:
        coro.close()
    with socket.socket() as sock, pytest.raises(SerializationError) as info:
        fresh().dumps([sock])
    assert info.value.path == "data[0]"


def test_refusal_of_builtin_subclasses_explains_why() -> None:
    class Name(str):
        pass

    with pytest.raises(SerializationError, match="subclass of str"):
        fresh().to_primitive([Name("x")])


def test_malformed_stored_data_is_refused_with_path() -> None:
    ser = fresh()
    with pytest.raises(SerializationError, match="malformed") as info:
        ser.from_primitive({"a": [{"$wfe": "decimal", "v": 5}]})
    assert info.value.path == 'data["a"][0]'
    with pytest.raises(SerializationError, match="unknown encoding"):
        ser.from_primitive({"$wfe": "pickle", "v": "gASV..."})
    with pytest.raises(SerializationError, match="not a JSON value"):
        ser.from_primitive({"a": object()})  # type: ignore[dict-item]


# --------------------------------------------------------------------------- security


def test_unknown_tag_is_refused_with_path_tag_and_fix() -> None:
    stored = Serializer(TypeRegistry()).to_primitive({"order": [make_order()]})
    reader = Serializer(TypeRegistry())
    with pytest.raises(SerializationError) as info:
        reader.from_primitive(stored)
    message = str(info.value)
    assert info.value.path == 'data["order"][0]'
    assert f"{__name__}.Order" in message
    assert "wfe_core.register_type(Order)" in message
    assert "host.register_type" in message


@pytest.mark.parametrize(
    "payload",
    [
        {"$wfe": "dataclass", "t": "os.system", "v": {"command": "echo pwned"}},
        {"$wfe": "pydantic", "t": "subprocess.Popen", "v": {"args": ["id"]}},
        {"$wfe": "enum", "t": "subprocess.Popen", "v": ["id"]},
        {"$wfe": "dataclass", "t": "wfe_never_imported_module.Evil", "v": {}},
        {"$wfe": "pydantic", "t": "builtins.eval", "v": {"source": "1"}},
    ],
)
def test_crafted_payload_cannot_import_or_build_arbitrary_classes(
    payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[str] = []
    real_import = builtins.__import__

    def spy_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if active:
            imported.append(name)
        return real_import(name, *args, **kwargs)

    def spy_import_module(name: str, package: str | None = None) -> Any:
        imported.append(name)
        raise AssertionError("importlib.import_module must not be called")

    active = False

    modules_before = set(sys.modules)
    text = json.dumps([payload])
    errors: list[SerializationError] = []
    for ser in (Serializer(TypeRegistry()), default_serializer):
        monkeypatch.setattr(builtins, "__import__", spy_import)
        monkeypatch.setattr(importlib, "import_module", spy_import_module)
        for use_text in (False, True):
            active = True
            try:
                if use_text:
                    ser.loads(text)
                else:
                    ser.from_primitive({"x": payload})
            except SerializationError as exc:
                errors.append(exc)
            finally:
                active = False
        monkeypatch.undo()
    assert imported == []
    assert len(errors) == 4
    assert all("not registered" in str(e) and payload["t"] in str(e) for e in errors)
    assert set(sys.modules) == modules_before
    assert "wfe_never_imported_module" not in sys.modules


def test_registered_type_of_the_wrong_kind_is_refused() -> None:
    ser = fresh()
    ser.register(Color)
    with pytest.raises(SerializationError, match="not a dataclass"):
        ser.from_primitive({"$wfe": "dataclass", "t": f"{__name__}.Color", "v": {}})


# --------------------------------------------------------------------------- registry


def test_tag_and_lookup() -> None:
    registry = TypeRegistry()
    assert registry.tag_for(Order) == f"{__name__}.Order"
    assert registry.lookup(f"{__name__}.Order") is None
    registry.register(Order)
    registry.register(Order)  # idempotent
    assert registry.lookup(f"{__name__}.Order") is Order
    assert registry.lookup("os.system") is None


@pytest.mark.parametrize(
    "bad",
    [int, Decimal, dict, object, make_order(), "x.Y", print],
    ids=["int", "Decimal", "dict", "object", "an-instance", "a-str", "a-function"],
)
def test_registering_an_unsupported_type_is_refused(bad: Any) -> None:
    with pytest.raises(SerializationError, match="only dataclasses, pydantic"):
        TypeRegistry().register(bad)


def test_registration_is_recursive_through_field_annotations() -> None:
    registry = TypeRegistry()
    registry.register(Outer)
    for cls in (Outer, Inner, InnerKind, Leaf, Keyed, InTuple, Tagged, InSet, Priority):
        assert registry.lookup(registry.tag_for(cls)) is cls, cls
    value = Outer(
        inner=Inner(InnerKind.A, [Leaf(1), Leaf(2)]),
        maybe=Leaf(3),
        by_key={"k": Keyed(4)},
        pair=(InTuple(5), 6),
        annotated=Tagged(7),
        forward=[InSet(8)],
        lit=Priority.HIGH,
    )
    text = Serializer(TypeRegistry()).dumps(value)  # written by another process
    reader = Serializer(TypeRegistry())
    reader.register(Outer)  # the only registration the reader makes
    assert reader.loads(text) == value


def test_registration_is_recursive_through_pydantic_fields() -> None:
    reader = Serializer(TypeRegistry())
    reader.register(PModel)
    model = PModel(
        amount=Decimal("1"),
        at=datetime(2024, 1, 1, tzinfo=UTC),
        inner=PModelInner(price=Decimal("2"), leaf=Leaf(9)),
    )
    assert reader.loads(Serializer(TypeRegistry()).dumps(model)) == model


def test_to_primitive_registers_what_it_encodes() -> None:
    ser = fresh()
    text = ser.dumps(make_order())
    assert ser.registry.lookup(f"{__name__}.Order") is Order
    assert ser.registry.lookup(f"{__name__}.Address") is Address
    assert ser.loads(text) == make_order()


def test_module_level_register_type_and_default_serializer() -> None:
    register_type(Money)
    assert default_serializer.registry.lookup(f"{__name__}.Money") is Money
    assert Serializer().registry is default_serializer.registry
    stored = Serializer(TypeRegistry()).to_primitive(Money(Decimal("1.00")))
    assert Serializer().from_primitive(stored) == Money(Decimal("1.00"))


# --------------------------------------------------------------------------- property


def _json_ish() -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(alphabet=st.characters(codec=None, exclude_categories=()))
        | st.decimals(allow_nan=True, allow_infinity=True)
        | st.decimals(places=18, allow_nan=False, allow_infinity=False)
        | st.datetimes(
            timezones=st.none()
            | st.timezones()
            | st.builds(
                timezone,
                st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)),
            ),
            allow_imaginary=True,
        )
        | st.dates()
        | st.uuids()
        | st.binary(max_size=20)
    )
    keys = st.text(max_size=8) | st.just("$wfe")
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=5)
            | st.tuples(children, children)
            | st.dictionaries(keys, children, max_size=5)
            | st.dictionaries(st.integers() | st.tuples(st.integers()), children, max_size=3)
        ),
        max_leaves=30,
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_ish())
def test_property_round_trip(value: Any) -> None:
    ser = Serializer(TypeRegistry())
    assert same(ser.loads(ser.dumps(value)), value)
    assert same(ser.copy(value), value)


def test_an_offset_with_microseconds_round_trips() -> None:
    """Python 3.11's fromisoformat drops the microseconds of a UTC offset (found by the
    property test above): the offset is stored on its own then."""
    ser = Serializer(TypeRegistry())
    for offset in (timedelta(microseconds=1), timedelta(hours=-5, microseconds=250)):
        value = datetime(2000, 1, 1, 12, tzinfo=timezone(offset))
        back = ser.loads(ser.dumps(value))
        assert back == value
        assert back.utcoffset() == offset
    plain = datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert '"o"' not in ser.dumps(plain)  # the usual case stores nothing more
    assert ser.loads(ser.dumps(plain)).utcoffset() == timedelta(hours=2)
