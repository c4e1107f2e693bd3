"""Encoding: user values to plain JSON values (the ``to_primitive`` half of
:class:`~wfe_core.serialization.Serializer`)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import decimal
import enum
import types
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from wfe_core.serialization._common import (
    _I64_MAX,
    _I64_MIN,
    _SUPPORTED,
    _SURROGATE,
    _TAG,
    JSONValue,
    _Encoder,
    _Fail,
    _is_pydantic_model_class,
    _json_value,
    _key_segment,
    _plain_str,
    _repr,
)
from wfe_core.serialization.type_registry import TypeRegistry
from wfe_core.serialization.undecodable import Undecodable

__all__: list[str] = []


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


class _Encoding:
    """The encoding methods of :class:`~wfe_core.serialization.Serializer`."""

    registry: TypeRegistry
    _class_enc: dict[type, _Encoder]

    def _fixed_encoders(self) -> dict[type, _Encoder]:
        """The encoders of the built-in types outside plain JSON."""
        return {
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
        elif tz is not None:
            offset = v.utcoffset()
            if offset is not None and offset.microseconds:  # fromisoformat (3.11) drops it
                out["o"] = [offset.days, offset.seconds, offset.microseconds]
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
