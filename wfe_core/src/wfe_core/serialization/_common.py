"""Shared pieces of the serializer: the JSON value type, the stored-form tag, the
internal refusal exception and small helpers used by the encoder, decoder and registry."""

from __future__ import annotations

import json
import re
import reprlib
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

import orjson

from wfe_core.errors import SerializationError

__all__ = ["JSONValue"]

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
