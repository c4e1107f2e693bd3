"""Type-faithful serialization of workflow data and event data.

Workflow data and event data are user objects: dataclasses, pydantic models, dicts and
primitives. :class:`Serializer` turns them into plain JSON values (``to_primitive``) or
JSON text (``dumps``) and back, with their types intact: a ``Decimal`` with 18 places
keeps its digits and exponent, a ``datetime`` keeps its offset (or its naivety), a
``tuple`` stays a tuple, a dict with ``int`` keys keeps them.

Stored form
-----------
Plain JSON values stay plain so the stored form is readable: ``None``, ``bool``, ``str``,
``int`` (64-bit), finite ``float``, ``list`` and ``dict`` with ``str`` keys. Anything else
is a tagged object ``{"$wfe": <kind>, "v": <payload>}`` (plus ``"t": <type tag>`` for user
types). A user dict that has a ``"$wfe"`` key of its own, or a key that is not a ``str``,
is stored as a tagged list of pairs, so it round-trips too. Strings holding NUL or lone
surrogates (which JSON stores such as PostgreSQL ``jsonb`` refuse) are tagged as well,
so the output of :meth:`Serializer.dumps` can be stored anywhere.

Security
--------
Dataclasses, pydantic models and ``Enum`` types are rebuilt only if their type is in the
serializer's :class:`TypeRegistry` (an allowlist). A type tag read from the store is only
ever *looked up* there: nothing is imported and no class is resolved by name, so a row
written by someone else cannot make the process import or build an arbitrary class.
Registering a type also registers the types reachable through its field annotations, and
:meth:`Serializer.to_primitive` registers the types it is handed (the application trusts
them), so a process that wrote a value can always read it back.

Refusal
-------
A value that cannot be stored faithfully (a lambda, a socket, a generator, a float dict
key, ...) is refused by ``to_primitive`` / ``dumps`` with a
:class:`~wfe_core.errors.SerializationError` whose ``path`` names the field, e.g.
``data.items[2].price`` or ``data["key"]``; nothing is partially returned.

Undecodable stored data
-----------------------
Stored data that this process cannot rebuild (it names a type that is not registered
here, or one whose registered class no longer fits the stored fields) must not stop
reads: :meth:`Serializer.loads_or_undecodable` and
:meth:`Serializer.from_primitive_or_undecodable` return an :class:`Undecodable` holding
the stored JSON text and the reason instead of raising. Encoding an ``Undecodable``
gives back exactly what was stored (``dumps`` returns ``raw`` verbatim), so saving an
instance that holds one never changes or loses the stored data. Providers decode user
values this way; :func:`has_undecodable` tells whether an instance holds one.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import decimal
import enum
import json
import re
import reprlib
import sys
import types
import typing
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias
from zoneinfo import ZoneInfo

import orjson

from wfe_core.errors import SerializationError

if TYPE_CHECKING:
    from wfe_core.models import WorkflowInstance

__all__ = [
    "JSONValue",
    "Serializer",
    "TypeRegistry",
    "Undecodable",
    "default_serializer",
    "has_undecodable",
    "register_type",
    "undecodable_fields",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
"""A plain JSON value, as :meth:`Serializer.to_primitive` returns it."""

_TAG = "$wfe"
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_SUPPORTED = (
    "None, bool, int, float, str, bytes, Decimal, datetime, date, time, timedelta, UUID, "
    "list, tuple, set, frozenset, dict, Enum members, dataclasses and pydantic models"
)
_HINT = "register it with wfe_core.register_type({name}) / host.register_type({name})"

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60

_Encoder: TypeAlias = Callable[[Any], JSONValue]
_Decoder: TypeAlias = Callable[[dict[str, Any]], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Undecodable:
    """A stored user value this process cannot rebuild, kept as it was stored.

    Providers return one in place of a value whose stored form names a type that is not
    registered here (or whose registered class no longer fits the stored fields), so
    reads never fail because of user data. Encoding it writes ``raw`` back verbatim:
    an instance that holds one can be saved (suspended, terminated, ...) without
    changing or losing the stored data, and decodes normally once the type is known.
    """

    raw: str
    """The stored JSON text, exactly."""
    reason: str
    """Why it could not be decoded (the decoder's message, naming the field)."""

    def __repr__(self) -> str:
        return f"Undecodable(reason={self.reason!r}, raw={_repr.repr(self.raw)})"


def _json_text(primitive: JSONValue) -> str:
    """Compact JSON text of a plain JSON value (as :meth:`Serializer.dumps` writes it)."""
    try:
        return orjson.dumps(primitive).decode()
    except orjson.JSONEncodeError:  # deeper than orjson's nesting limit, or not JSON
        return json.dumps(primitive, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_value(text: str) -> Any:
    """Parse JSON text (orjson first, the standard library for very deep nesting)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_POINTER_VALUE_FIELDS = (
    "persistence_data",
    "event_data",
    "context_item",
    "outcome",
    "extension_attributes",
    "children",
    "scope",
)


def undecodable_fields(instance: WorkflowInstance) -> list[tuple[str, str | None, Undecodable]]:
    """Every top-level user value of ``instance`` that is :class:`Undecodable`.

    Each entry is ``(field, pointer_id, value)``: ``field`` is ``"data"`` or
    ``"execution_pointers['<id>'].<name>"``, ``pointer_id`` the pointer's id (None for
    the workflow data). Workflow data first, then pointers in order.
    """
    found: list[tuple[str, str | None, Undecodable]] = []
    if isinstance(instance.data, Undecodable):
        found.append(("data", None, instance.data))
    for pointer in instance.execution_pointers:
        for name in _POINTER_VALUE_FIELDS:
            value = getattr(pointer, name, None)
            if isinstance(value, Undecodable):
                found.append((f"execution_pointers[{pointer.id!r}].{name}", pointer.id, value))
    return found


def has_undecodable(instance: WorkflowInstance) -> str | None:
    """The reason of the first :class:`Undecodable` value in ``instance`` (its data, then
    its pointers' data fields), or None when everything was decoded."""
    found = undecodable_fields(instance)
    return found[0][2].reason if found else None


class _Fail(Exception):
    """Internal: a refusal on its way up; containers add their path segment to it."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.segments: list[str] = []
        self.cause = cause

    def to_error(self, base: str) -> SerializationError:
        path = base + "".join(reversed(self.segments))
        return SerializationError(self.message, path)


def _key_segment(key: Any) -> str:
    if type(key) is str:
        return "[" + json.dumps(key, ensure_ascii=False) + "]"
    return f"[{_repr.repr(key)}]"


def _plain_str(s: str) -> bool:
    return "\x00" not in s and (s.isascii() or _SURROGATE.search(s) is None)


def _pydantic_base() -> type | None:
    # pydantic is optional: if it has not been imported, no value can be a model.
    mod = sys.modules.get("pydantic")
    base = getattr(mod, "BaseModel", None) if mod is not None else None
    return base if isinstance(base, type) else None


def _is_pydantic_model_class(cls: type) -> bool:
    base = _pydantic_base()
    return base is not None and issubclass(cls, base)


def _is_user_type(obj: object) -> bool:
    if not isinstance(obj, type):
        return False
    return (
        issubclass(obj, enum.Enum) or dataclasses.is_dataclass(obj) or _is_pydantic_model_class(obj)
    )


def _field_annotations(cls: type) -> list[Any]:
    """The declared types of a user type's fields (best effort; never raises)."""
    if _is_pydantic_model_class(cls):
        model_fields: dict[str, Any] = getattr(cls, "model_fields", {})
        return [f.annotation for f in model_fields.values()]
    if dataclasses.is_dataclass(cls):
        dc_fields = dataclasses.fields(cls)
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:  # unresolvable forward references: use what is there
            hints = {}
        return [hints.get(f.name, f.type) for f in dc_fields]
    return []


def _reachable_user_types(annotation: Any) -> list[type]:
    """The user types named anywhere inside a type annotation."""
    found: list[type] = []
    stack = [annotation]
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        origin = typing.get_origin(t)
        if origin is not None:
            stack.append(origin)
            stack.extend(typing.get_args(t))
        elif isinstance(t, enum.Enum):  # Literal[Color.RED]
            stack.append(type(t))
        elif isinstance(t, type):
            if _is_user_type(t):
                found.append(t)
        elif hasattr(t, "__supertype__"):  # typing.NewType
            stack.append(t.__supertype__)
    return found


class TypeRegistry:
    """Allowlist of user types that may be rebuilt from stored data.

    Holds dataclasses, pydantic ``BaseModel`` subclasses and ``Enum`` subclasses, keyed by
    a stable tag (``module.QualifiedName``). Tags read from the store are only looked up
    here, never imported.
    """

    def __init__(self) -> None:
        self._by_tag: dict[str, type] = {}
        self._tags: dict[type, str] = {}

    def register(self, *types: type) -> None:
        """Allow ``types`` (and the user types reachable through their fields) to be rebuilt.

        Accepts dataclasses, pydantic ``BaseModel`` subclasses and ``Enum`` subclasses;
        anything else raises :class:`~wfe_core.errors.SerializationError`. Idempotent. A
        later registration of a different class with the same tag replaces the earlier
        one (a reloaded module, a class redefined in a test).
        """
        for cls in types:
            if not _is_user_type(cls):
                raise SerializationError(
                    f"cannot register {_repr.repr(cls)}: only dataclasses, pydantic BaseModel "
                    "subclasses and Enum subclasses can be registered (values of built-in "
                    f"types are supported without registration: {_SUPPORTED})"
                )
        for cls in types:
            self._register(cls)

    def _register(self, cls: type) -> None:
        stack = [cls]
        while stack:
            c = stack.pop()
            if c in self._tags:
                continue
            tag = self.tag_for(c)
            self._tags[c] = tag
            self._by_tag[tag] = c
            for annotation in _field_annotations(c):
                stack.extend(_reachable_user_types(annotation))

    def lookup(self, tag: str) -> type | None:
        """Return the registered type with this tag, or ``None`` (never imports anything)."""
        return self._by_tag.get(tag)

    def tag_for(self, cls: type) -> str:
        """Return the stable tag of ``cls``: ``f"{cls.__module__}.{cls.__qualname__}"``."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def __contains__(self, cls: object) -> bool:
        """Whether ``cls`` itself is registered."""
        return cls in self._tags


def _unsupported(t: type) -> _Encoder:
    """An encoder that refuses values of type ``t`` (with a hint where one helps)."""
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    hint = ""
    if issubclass(t, types.GeneratorType | types.AsyncGeneratorType):
        hint = "; materialize it first (e.g. list(...))"
    elif issubclass(t, types.CoroutineType):
        hint = "; did you forget to await it?"
    elif issubclass(t, types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        hint = "; store data, not code (e.g. the name of what to call)"
    else:
        for base in (str, int, float, tuple, list, dict, set, frozenset, bytes, datetime, date):
            if issubclass(t, base):
                hint = (
                    f"; it is a subclass of {base.__name__}, which would come back as a plain "
                    f"{base.__name__}: convert it, or use a dataclass"
                )
                break
        if not hint and (isinstance(t, type) and hasattr(t, "__dict__")):
            hint = "; make it a dataclass or a pydantic model"

    def refuse(value: Any) -> JSONValue:
        raise _Fail(
            f"cannot store a value of type {name} ({_repr.repr(value)}){hint}. "
            f"Supported: {_SUPPORTED}"
        )

    return refuse


class Serializer:
    """Converts workflow and event data to JSON values / JSON text and back, type-faithfully."""

    registry: TypeRegistry
    """The allowlist of user types this serializer may rebuild."""

    def __init__(self, registry: TypeRegistry | None = None) -> None:
        """Use ``registry``, or the module-level default one (see :func:`register_type`)."""
        self.registry = registry if registry is not None else _default_registry
        self._class_enc: dict[type, _Encoder] = {
            tuple: self._enc_tuple,
            set: self._enc_set,
            frozenset: self._enc_frozenset,
            bytes: self._enc_bytes,
            bytearray: self._enc_bytearray,
            decimal.Decimal: self._enc_decimal,
            datetime: self._enc_datetime,
            date: self._enc_date,
            time: self._enc_time,
            timedelta: self._enc_timedelta,
            uuid.UUID: self._enc_uuid,
            Undecodable: self._enc_undecodable,
        }
        self._kind_dec: dict[str, _Decoder] = {
            "str": self._dec_str,
            "int": self._dec_int,
            "float": self._dec_float,
            "tuple": self._dec_tuple,
            "set": self._dec_set,
            "frozenset": self._dec_frozenset,
            "dict": self._dec_dict,
            "bytes": self._dec_bytes,
            "bytearray": self._dec_bytearray,
            "decimal": self._dec_decimal,
            "datetime": self._dec_datetime,
            "date": self._dec_date,
            "time": self._dec_time,
            "timedelta": self._dec_timedelta,
            "uuid": self._dec_uuid,
            "enum": lambda v: self._dec_user(v, "enum"),
            "dataclass": lambda v: self._dec_user(v, "dataclass"),
            "pydantic": lambda v: self._dec_user(v, "pydantic"),
        }
        self._user_dec: dict[tuple[str, type], _Decoder] = {}

    # ------------------------------------------------------------------ public API

    def register(self, *types: type) -> None:
        """Allow ``types`` to be rebuilt from stored data (same as ``registry.register``)."""
        self.registry.register(*types)

    def to_primitive(self, value: Any, path: str = "data") -> JSONValue:
        """Return ``value`` as a plain JSON value; refuse what cannot round-trip.

        Raises :class:`~wfe_core.errors.SerializationError` naming the offending field
        (``path`` is the name of the root, ``data`` by default).
        """
        try:
            return self._enc(value)
        except _Fail as fail:
            raise fail.to_error(path) from fail.cause
        except RecursionError:
            raise SerializationError(
                "the value is nested too deeply or contains a reference cycle", path
            ) from None

    def from_primitive(self, value: JSONValue, path: str = "data") -> Any:
        """Rebuild the value that :meth:`to_primitive` turned into ``value``.

        Raises :class:`~wfe_core.errors.SerializationError` naming the field when the
        stored form is malformed or names a type that is not registered.
        """
        try:
            return self._dec(value)
        except _Fail as fail:
            raise fail.to_error(path) from fail.cause
        except RecursionError:
            raise SerializationError("the stored value is nested too deeply", path) from None

    def dumps(self, value: Any, path: str = "data") -> str:
        """Return ``value`` as JSON text (see :meth:`to_primitive`); an
        :class:`Undecodable` gives its ``raw`` text back verbatim."""
        if type(value) is Undecodable:
            return value.raw
        primitive = self.to_primitive(value, path)
        try:
            return orjson.dumps(primitive).decode()
        except orjson.JSONEncodeError:  # deeper than orjson's nesting limit
            try:
                return json.dumps(
                    primitive, ensure_ascii=False, allow_nan=False, separators=(",", ":")
                )
            except (ValueError, RecursionError) as exc:
                raise SerializationError(f"cannot write the value as JSON: {exc}", path) from exc

    def loads(self, text: str | bytes, path: str = "data") -> Any:
        """Rebuild a value from JSON text written by :meth:`dumps`."""
        try:
            primitive = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            try:  # orjson refuses very deep nesting; the standard library does not
                primitive = json.loads(text)
            except (ValueError, RecursionError):
                raise SerializationError(f"stored text is not valid JSON: {exc}", path) from exc
        return self.from_primitive(primitive, path)

    def loads_or_undecodable(self, text: str | bytes, path: str = "data") -> Any:
        """:meth:`loads`, but stored data that cannot be rebuilt here (a type that is not
        registered, a registered class that no longer fits, a malformed stored form)
        comes back as an :class:`Undecodable` holding ``text`` and the reason instead of
        raising."""
        try:
            return self.loads(text, path)
        except SerializationError as exc:
            raw = text.decode() if isinstance(text, bytes) else text
            return Undecodable(raw, str(exc))

    def from_primitive_or_undecodable(self, value: JSONValue, path: str = "data") -> Any:
        """:meth:`from_primitive`, but a stored form that cannot be rebuilt here comes back
        as an :class:`Undecodable` (its ``raw`` is ``value`` as JSON text) instead of
        raising."""
        try:
            return self.from_primitive(value, path)
        except SerializationError as exc:
            try:
                raw = _json_text(value)
            except (TypeError, ValueError, RecursionError):
                raise exc from None
            return Undecodable(raw, str(exc))

    def copy(self, value: Any, path: str = "data") -> Any:
        """Return a faithful deep copy of ``value`` (what storing and loading it gives)."""
        return self.from_primitive(self.to_primitive(value, path), path)

    # ------------------------------------------------------------------ encoding

    def _enc(self, v: Any) -> JSONValue:
        t = type(v)
        if t is str:
            if "\x00" not in v and (v.isascii() or _SURROGATE.search(v) is None):
                return v  # type: ignore[no-any-return]
            return {_TAG: "str", "v": v.encode("unicode_escape").decode("ascii")}
        if t is int:
            if _I64_MIN <= v <= _I64_MAX:
                return v  # type: ignore[no-any-return]
            return {_TAG: "int", "v": str(v)}
        if v is None or t is bool:
            return v  # type: ignore[no-any-return]
        if t is float:
            if v - v == 0.0:  # finite
                return v  # type: ignore[no-any-return]
            return {_TAG: "float", "v": "nan" if v != v else ("inf" if v > 0 else "-inf")}
        if t is list:
            return self._enc_list(v)
        if t is dict:
            return self._enc_dict(v)
        encoder = self._class_enc.get(t)
        if encoder is None:
            encoder = self._class_enc[t] = self._encoder_for(t)
        return encoder(v)

    def _enc_list(self, v: list[Any]) -> list[JSONValue]:
        enc = self._enc
        out: list[JSONValue] = []
        append = out.append
        try:
            for x in v:
                append(enc(x))
        except _Fail as fail:
            fail.segments.append(f"[{len(out)}]")
            raise
        return out

    def _enc_dict(self, v: dict[Any, Any]) -> JSONValue:
        if _TAG in v:
            return self._enc_dict_pairs(v)
        enc = self._enc
        out: dict[str, JSONValue] = {}
        k: Any = None
        try:
            for k, x in v.items():
                if type(k) is not str or not _plain_str(k):
                    break
                out[k] = enc(x)
            else:
                return out
        except _Fail as fail:
            fail.segments.append(_key_segment(k))
            raise
        return self._enc_dict_pairs(v)

    def _enc_dict_pairs(self, v: dict[Any, Any]) -> JSONValue:
        enc = self._enc
        pairs: list[JSONValue] = []
        for k, x in v.items():
            if type(k) is float:
                fail = _Fail(
                    f"dict key {k!r} is a float; float keys are not supported (1 and 1.0 "
                    "collide, nan never matches): use str, int, Decimal or a tuple"
                )
                fail.segments.append(_key_segment(k))
                raise fail
            try:
                key = enc(k)
            except _Fail as fail:
                fail.message = f"dict key: {fail.message}"
                fail.segments.append(_key_segment(k))
                raise
            try:
                pairs.append([key, enc(x)])
            except _Fail as fail:
                fail.segments.append(_key_segment(k))
                raise
        return {_TAG: "dict", "v": pairs}

    def _enc_items(self, items: Any, segment: str | None) -> list[JSONValue]:
        enc = self._enc
        out: list[JSONValue] = []
        append = out.append
        try:
            for x in items:
                append(enc(x))
        except _Fail as fail:
            fail.segments.append(f"[{len(out)}]" if segment is None else segment)
            raise
        return out

    def _enc_tuple(self, v: tuple[Any, ...]) -> JSONValue:
        return {_TAG: "tuple", "v": self._enc_items(v, None)}

    def _sorted_items(self, v: set[Any] | frozenset[Any]) -> list[JSONValue]:
        items = self._enc_items(v, "{...}")
        with contextlib.suppress(orjson.JSONEncodeError):  # a stable stored form
            items.sort(key=lambda p: orjson.dumps(p, option=orjson.OPT_SORT_KEYS))
        return items

    def _enc_set(self, v: set[Any]) -> JSONValue:
        return {_TAG: "set", "v": self._sorted_items(v)}

    def _enc_frozenset(self, v: frozenset[Any]) -> JSONValue:
        return {_TAG: "frozenset", "v": self._sorted_items(v)}

    def _enc_bytes(self, v: bytes) -> JSONValue:
        return {_TAG: "bytes", "v": base64.b64encode(v).decode("ascii")}

    def _enc_bytearray(self, v: bytearray) -> JSONValue:
        return {_TAG: "bytearray", "v": base64.b64encode(v).decode("ascii")}

    def _enc_decimal(self, v: decimal.Decimal) -> JSONValue:
        return {_TAG: "decimal", "v": str(v)}  # to-scientific-string: exact, keeps exponent

    def _enc_datetime(self, v: datetime) -> JSONValue:
        out: dict[str, JSONValue] = {_TAG: "datetime", "v": v.isoformat()}
        tz = v.tzinfo
        if isinstance(tz, ZoneInfo) and tz.key is not None:
            out["z"] = tz.key
        if v.fold:
            out["f"] = 1
        return out

    def _enc_date(self, v: date) -> JSONValue:
        return {_TAG: "date", "v": v.isoformat()}

    def _enc_time(self, v: time) -> JSONValue:
        out: dict[str, JSONValue] = {_TAG: "time", "v": v.isoformat()}
        tz = v.tzinfo
        if isinstance(tz, ZoneInfo) and tz.key is not None:
            out["z"] = tz.key
        elif tz is not None and v.utcoffset() is None:
            raise _Fail(f"cannot store a time whose tzinfo {tz!r} gives no UTC offset")
        if v.fold:
            out["f"] = 1
        return out

    def _enc_timedelta(self, v: timedelta) -> JSONValue:
        return {_TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]}

    def _enc_uuid(self, v: uuid.UUID) -> JSONValue:
        return {_TAG: "uuid", "v": str(v)}

    def _enc_undecodable(self, v: Undecodable) -> JSONValue:
        # The stored form it was read from, unchanged.
        try:
            return _json_value(v.raw)  # type: ignore[no-any-return]
        except (ValueError, RecursionError) as exc:
            raise _Fail(f"undecodable stored data is not JSON text: {exc}", exc) from exc

    def _encoder_for(self, t: type) -> _Encoder:
        """Build (once per class) the encoder of a type outside the fixed set."""
        if issubclass(t, enum.Enum):
            self.registry.register(t)
            return self._enum_encoder(t)
        if dataclasses.is_dataclass(t):
            self.registry.register(t)
            return self._dataclass_encoder(t)
        if _is_pydantic_model_class(t):
            self.registry.register(t)
            return self._pydantic_encoder(t)
        return _unsupported(t)

    def _enum_encoder(self, cls: type[enum.Enum]) -> _Encoder:
        tag = self.registry.tag_for(cls)
        enc = self._enc

        def encode(v: enum.Enum) -> JSONValue:
            try:
                value = enc(v._value_)
            except _Fail as fail:
                fail.segments.append(".value")
                raise
            return {_TAG: "enum", "t": tag, "v": value}

        return encode

    def _dataclass_encoder(self, cls: type) -> _Encoder:
        tag = self.registry.tag_for(cls)
        names = tuple(f.name for f in dataclasses.fields(cls))
        enc = self._enc
        missing = object()

        def encode(v: Any) -> JSONValue:
            out: dict[str, JSONValue] = {}
            name = ""
            try:
                for name in names:
                    x = getattr(v, name, missing)
                    if x is not missing:  # an init=False field never set
                        out[name] = enc(x)
            except _Fail as fail:
                fail.segments.append("." + name)
                raise
            return {_TAG: "dataclass", "t": tag, "v": out}

        return encode

    def _pydantic_encoder(self, cls: type) -> _Encoder:
        tag = self.registry.tag_for(cls)
        model_fields: dict[str, Any] = cls.model_fields  # type: ignore[attr-defined]
        names = tuple(model_fields)
        all_names = frozenset(names)
        enc = self._enc
        missing = object()

        def encode(v: Any) -> JSONValue:
            out: dict[str, JSONValue] = {}
            name = ""
            try:
                for name in names:
                    x = getattr(v, name, missing)
                    if x is not missing:
                        out[name] = enc(x)
                result: dict[str, JSONValue] = {_TAG: "pydantic", "t": tag, "v": out}
                extra = v.__pydantic_extra__
                if extra:
                    result["x"] = extras = {}
                    for name, x in extra.items():
                        extras[name] = enc(x)
            except _Fail as fail:
                fail.segments.append("." + name)
                raise
            fields_set = v.__pydantic_fields_set__
            if fields_set != all_names:
                result["s"] = sorted(fields_set)
            return result

        return encode

    # ------------------------------------------------------------------ decoding

    def _dec(self, v: Any) -> Any:
        t = type(v)
        if t is str or t is int or t is float or t is bool or v is None:
            return v
        if t is list:
            return self._dec_list(v)
        if t is dict:
            if _TAG in v:
                return self._dec_tagged(v)
            dec = self._dec
            out: dict[str, Any] = {}
            k = ""
            try:
                for k, x in v.items():
                    out[k] = dec(x)
            except _Fail as fail:
                fail.segments.append(_key_segment(k))
                raise
            return out
        raise _Fail(f"not a JSON value: {t.__qualname__} ({_repr.repr(v)})")

    def _dec_list(self, v: list[Any], segment: str | None = None) -> list[Any]:
        dec = self._dec
        out: list[Any] = []
        append = out.append
        try:
            for x in v:
                append(dec(x))
        except _Fail as fail:
            fail.segments.append(f"[{len(out)}]" if segment is None else segment)
            raise
        return out

    def _dec_tagged(self, v: dict[str, Any]) -> Any:
        kind = v[_TAG]
        decoder = self._kind_dec.get(kind) if type(kind) is str else None
        if decoder is None:
            raise _Fail(
                f"unknown encoding {kind!r} in stored data (written by a newer version of wfe, "
                "or not written by wfe)"
            )
        try:
            return decoder(v)
        except _Fail:
            raise
        except Exception as exc:
            raise _Fail(f"malformed stored {kind!r} value: {exc!r}", exc) from exc

    def _dec_str(self, v: dict[str, Any]) -> str:
        return v["v"].encode("ascii").decode("unicode_escape")  # type: ignore[no-any-return]

    def _dec_int(self, v: dict[str, Any]) -> int:
        return int(v["v"])

    def _dec_float(self, v: dict[str, Any]) -> float:
        text = v["v"]
        if text not in ("nan", "inf", "-inf"):
            raise ValueError(f"not a non-finite float: {text!r}")
        return float(text)

    def _dec_payload_list(self, v: dict[str, Any], segment: str | None) -> list[Any]:
        items = v["v"]
        if type(items) is not list:
            raise TypeError("the payload is not a list")
        return self._dec_list(items, segment)

    def _dec_tuple(self, v: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(self._dec_payload_list(v, None))

    def _dec_set(self, v: dict[str, Any]) -> set[Any]:
        return set(self._dec_payload_list(v, "{...}"))

    def _dec_frozenset(self, v: dict[str, Any]) -> frozenset[Any]:
        return frozenset(self._dec_payload_list(v, "{...}"))

    def _dec_dict(self, v: dict[str, Any]) -> dict[Any, Any]:
        dec = self._dec
        out: dict[Any, Any] = {}
        for i, pair in enumerate(v["v"]):
            raw_key, raw_value = pair
            try:
                key = dec(raw_key)
            except _Fail as fail:
                fail.message = f"dict key: {fail.message}"
                fail.segments.append(f"[<key #{i}>]")
                raise
            try:
                out[key] = dec(raw_value)
            except _Fail as fail:
                fail.segments.append(_key_segment(key))
                raise
        return out

    def _dec_bytes(self, v: dict[str, Any]) -> bytes:
        return base64.b64decode(v["v"], validate=True)

    def _dec_bytearray(self, v: dict[str, Any]) -> bytearray:
        return bytearray(base64.b64decode(v["v"], validate=True))

    def _dec_decimal(self, v: dict[str, Any]) -> decimal.Decimal:
        text = v["v"]
        if type(text) is not str:
            raise TypeError("the payload is not a string")
        return decimal.Decimal(text)

    def _dec_datetime(self, v: dict[str, Any]) -> datetime:
        dt = datetime.fromisoformat(v["v"])
        zone = self._zone(v)
        if zone is not None:
            return dt.replace(tzinfo=zone, fold=v.get("f", 0))
        return dt.replace(fold=1) if v.get("f") else dt

    def _dec_date(self, v: dict[str, Any]) -> date:
        return date.fromisoformat(v["v"])

    def _dec_time(self, v: dict[str, Any]) -> time:
        t = time.fromisoformat(v["v"])
        zone = self._zone(v)
        if zone is not None:
            t = t.replace(tzinfo=zone)
        return t.replace(fold=1) if v.get("f") else t

    @staticmethod
    def _zone(v: dict[str, Any]) -> ZoneInfo | None:
        """The IANA zone a stored datetime was in, if it is known here (else the offset)."""
        key = v.get("z")
        if type(key) is not str or not _ZONE_KEY.fullmatch(key):
            return None
        try:
            return ZoneInfo(key)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            return None

    def _dec_timedelta(self, v: dict[str, Any]) -> timedelta:
        days, seconds, microseconds = v["v"]
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)

    def _dec_uuid(self, v: dict[str, Any]) -> uuid.UUID:
        return uuid.UUID(v["v"])

    def _dec_user(self, v: dict[str, Any], kind: str) -> Any:
        """Rebuild a registered user type (an allowlist lookup; nothing is imported)."""
        tag = v.get("t")
        cls = self.registry.lookup(tag) if type(tag) is str else None
        decoder = self._user_dec.get((kind, cls)) if cls is not None else None
        if decoder is None:
            decoder = self._user_decoder(kind, tag, cls)
        return decoder(v)

    def _user_decoder(self, kind: str, tag: object, cls: type | None) -> _Decoder:
        what = {"enum": "Enum", "dataclass": "dataclass", "pydantic": "pydantic model"}[kind]
        if type(tag) is not str:
            raise _Fail(f"stored {what} has no type tag")
        if cls is None:
            name = tag.rpartition(".")[2] or tag
            raise _Fail(
                f"stored data names the type {tag!r}, which is not registered in this "
                "process, so it will not be rebuilt (types are never imported from stored "
                "data); " + _HINT.format(name=name)
            )
        if kind == "enum" and issubclass(cls, enum.Enum):
            decoder = self._enum_decoder(cls)
        elif kind == "dataclass" and dataclasses.is_dataclass(cls):
            decoder = self._dataclass_decoder(cls)
        elif kind == "pydantic" and _is_pydantic_model_class(cls):
            decoder = self._pydantic_decoder(cls)
        else:
            raise _Fail(f"stored {what} names {tag!r}, but the registered type is not a {what}")
        self._user_dec[(kind, cls)] = decoder
        return decoder

    def _enum_decoder(self, cls: type[enum.Enum]) -> _Decoder:
        dec = self._dec

        def decode(v: dict[str, Any]) -> Any:
            try:
                value = dec(v["v"])
            except _Fail as fail:
                fail.segments.append(".value")
                raise
            try:
                return cls(value)
            except ValueError as exc:
                raise _Fail(f"{value!r} is not a member of {cls.__qualname__}", exc) from exc

        return decode

    def _dataclass_decoder(self, cls: type) -> _Decoder:
        dc_fields = dataclasses.fields(cls)
        init_names = frozenset(f.name for f in dc_fields if f.init)
        late_names = frozenset(f.name for f in dc_fields if not f.init)
        dec = self._dec

        def decode(v: dict[str, Any]) -> Any:
            kwargs: dict[str, Any] = {}
            late: dict[str, Any] = {}
            name = ""
            try:
                for name, x in v["v"].items():
                    if name in init_names:
                        kwargs[name] = dec(x)
                    elif name in late_names:
                        late[name] = dec(x)
                    # a field the class no longer has is dropped
            except _Fail as fail:
                fail.segments.append("." + name)
                raise
            try:
                obj = cls(**kwargs)
            except Exception as exc:
                raise _Fail(f"could not rebuild {cls.__qualname__}: {exc!r}", exc) from exc
            for name, x in late.items():
                object.__setattr__(obj, name, x)  # works for frozen dataclasses too
            return obj

        return decode

    def _pydantic_decoder(self, cls: Any) -> _Decoder:
        model_fields: dict[str, Any] = cls.model_fields
        required = tuple(n for n, f in model_fields.items() if f.is_required())
        is_root = bool(getattr(cls, "__pydantic_root_model__", False))
        dec = self._dec

        def decode(v: dict[str, Any]) -> Any:
            values: dict[str, Any] = {}
            name = ""
            try:
                for name, x in v["v"].items():
                    if name in model_fields:
                        values[name] = dec(x)
                for name, x in (v.get("x") or {}).items():
                    values[name] = dec(x)
            except _Fail as fail:
                fail.segments.append("." + name)
                raise
            lacking = [n for n in required if n not in values]
            if lacking:
                raise _Fail(
                    f"stored {cls.__qualname__} lacks the required field(s) {', '.join(lacking)}"
                )
            fields_set = set(v["s"]) if "s" in v else None
            # Restore exactly what was stored: no validators are re-run on load.
            if is_root:
                return cls.model_construct(values["root"], _fields_set=fields_set)
            return cls.model_construct(_fields_set=fields_set, **values)

        return decode


_default_registry = TypeRegistry()

default_serializer = Serializer(_default_registry)
"""The process-wide serializer; its registry is the one :func:`register_type` fills."""


def register_type(*types: type) -> None:
    """Allow ``types`` (and the user types their fields name) to be rebuilt from stored data."""
    default_serializer.register(*types)
