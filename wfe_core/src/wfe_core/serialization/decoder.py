"""Decoding: plain JSON values back to user values (the ``from_primitive`` half of
:class:`~wfe_core.serialization.Serializer`)."""

from __future__ import annotations

import base64
import dataclasses
import decimal
import enum
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from wfe_core.serialization._common import (
    _HINT,
    _TAG,
    _ZONE_KEY,
    _Decoder,
    _Fail,
    _is_pydantic_model_class,
    _key_segment,
    _repr,
)
from wfe_core.serialization.type_registry import TypeRegistry

__all__: list[str] = []


class _Decoding:
    """The decoding methods of :class:`~wfe_core.serialization.Serializer`."""

    registry: TypeRegistry
    _kind_dec: dict[str, _Decoder]
    _user_dec: dict[tuple[str, type], _Decoder]

    def _fixed_decoders(self) -> dict[str, _Decoder]:
        """The decoders of the tagged kinds, by kind."""
        return {
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
        offset = v.get("o")
        if offset is not None:  # an offset with microseconds (see the encoder)
            days, seconds, micro = offset
            dt = dt.replace(
                tzinfo=timezone(timedelta(days=days, seconds=seconds, microseconds=micro))
            )
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
