"""Turning parsed JSON into typed values and back, and reading durations.

:func:`coerce` builds a value of a declared type (a workflow's ``data_type``, a
dataclass field, ``list[Decimal]`` ...) from parsed JSON: what ``wfe start --data``
uses to hand a workflow data of the right type. :func:`jsonable` is the way back: any
value wfe stores as plain JSON, for printing or for a JSON API. :func:`parse_duration`
reads ``7d``, ``1h30m`` or ``500ms``.

None of them imports a class by a name found in the data: types come only from what
the caller declares.
"""

from __future__ import annotations

import base64
import collections.abc
import contextlib
import dataclasses
import decimal
import enum
import json
import math
import re
import sys
import types
import typing
import uuid
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from wfe_core.serialization import Undecodable

__all__ = ["coerce", "jsonable", "parse_duration", "shorten"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> timedelta:
    """Parse ``7d``, ``12h``, ``30m``, ``45s``, ``1h30m``, ``2w``, ``500ms``.

    Raises ``ValueError`` with the accepted forms for anything else, and for a
    duration longer than ``timedelta`` holds (999,999,999 days).
    """
    s = re.sub(r"\s+", "", text).lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        pos = match.end()
    if not s or pos != len(s):
        raise ValueError(
            f"{shorten(text)!r} is not a duration: use a number and a unit (w, d, h, m, s, "
            "ms), e.g. 7d, 12h, 30m, 45s or 1h30m"
        )
    try:
        if not math.isfinite(total):
            raise OverflowError
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(
            f"{shorten(text)!r} is too long a duration: the longest is "
            f"{timedelta.max.days:,} days (about 2.7 million years)"
        ) from None


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for a message (a huge input stays readable)."""
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text):,} characters)"


class _CoerceError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _pydantic_model(tp: Any) -> bool:
    mod = sys.modules.get("pydantic")
    base = getattr(mod, "BaseModel", None)
    return isinstance(base, type) and isinstance(tp, type) and issubclass(tp, base)


def coerce(value: Any, tp: Any, path: str = "data") -> Any:
    """Build a value of type ``tp`` from parsed JSON ``value`` (dataclasses, pydantic
    models, Enums, Decimal, datetime, UUID, timedelta, containers, Optional / unions).

    Raises ``ValueError`` naming the field (``data.items[0].price: ...``).
    """
    try:
        return _coerce(value, tp, path)
    except _CoerceError as exc:
        raise ValueError(str(exc)) from None


def _coerce(value: Any, tp: Any, path: str) -> Any:
    if tp is None or tp is Any or tp is object:
        return value
    if isinstance(tp, typing.TypeVar):
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _coerce(value, args[0], path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems: list[str] = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except _CoerceError as exc:
                problems.append(str(exc).split(": ", 1)[-1])
        raise _CoerceError(path, " / ".join(problems) or f"expected {_type_name(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise _CoerceError(path, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin is not None:
        return _coerce_generic(value, origin, args, path, tp)
    if not isinstance(tp, type):
        return value
    if value is None:
        if tp is type(None):
            return None
        raise _CoerceError(path, f"expected {_type_name(tp)}, got null")
    if dataclasses.is_dataclass(tp):
        return _coerce_dataclass(value, tp, path)
    if _pydantic_model(tp):
        try:
            return tp.model_validate(value)  # type: ignore[attr-defined]
        except Exception as exc:
            raise _CoerceError(path, f"not a valid {tp.__name__}: {exc}") from exc
    if issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            if isinstance(value, str) and value in tp.__members__:
                return tp[value]
            members = ", ".join(repr(m.value) for m in tp)
            raise _CoerceError(path, f"{value!r} is not one of {members}") from None
    return _coerce_scalar(value, tp, path)


def _coerce_scalar(value: Any, tp: type, path: str) -> Any:
    got = type(value).__name__ if value is not None else "null"
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is decimal.Decimal:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                result = decimal.Decimal(str(value))
            except decimal.InvalidOperation:
                raise _CoerceError(path, f"{value!r} is not a decimal number") from None
            return result
    elif tp is datetime:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not an ISO 8601 date-time") from None
    elif tp is date:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not an ISO 8601 date") from None
    elif tp is dtime:
        if isinstance(value, str):
            try:
                return dtime.fromisoformat(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not an ISO 8601 time") from None
    elif tp is timedelta:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise _CoerceError(path, str(exc)) from None
        got = f"{got} (give seconds or a duration such as '30m')"
    elif tp is uuid.UUID:
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                raise _CoerceError(path, f"{value!r} is not a UUID") from None
    elif tp is bytes:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise _CoerceError(path, "expected base64 text") from None
    elif tp in (dict, list):
        if isinstance(value, tp):
            return value
    elif tp in (tuple, set, frozenset):
        if isinstance(value, list):
            return tp(value)
    elif isinstance(value, tp):
        return value
    else:
        raise _CoerceError(path, f"cannot build a {tp.__name__} from JSON ({got})")
    raise _CoerceError(path, f"expected {_type_name(tp)}, got {got}")


def _coerce_generic(value: Any, origin: Any, args: tuple[Any, ...], path: str, tp: Any) -> Any:
    abc = collections.abc
    if origin in (
        list,
        set,
        frozenset,
        abc.Sequence,
        abc.MutableSequence,
        abc.Set,
        abc.MutableSet,
        abc.Iterable,
        abc.Collection,
    ):
        if not isinstance(value, list):
            raise _CoerceError(path, f"expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin in (set, abc.Set, abc.MutableSet):
            return set(items)
        return frozenset(items) if origin is frozenset else items
    if origin is tuple:
        if not isinstance(value, list):
            raise _CoerceError(path, f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise _CoerceError(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(v, args[i] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)
        )
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if not isinstance(value, dict):
            raise _CoerceError(path, f"expected an object, got {type(value).__name__}")
        key_t, val_t = args if len(args) == 2 else (Any, Any)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            sub = f"{path}[{json.dumps(k)}]"
            key = k if key_t in (Any, str) else _coerce_key(k, key_t, sub)
            out[key] = _coerce(v, val_t, sub)
        return out
    if isinstance(origin, type) and isinstance(value, origin):
        return value
    raise _CoerceError(path, f"cannot build {_type_name(tp)} from JSON")


def _coerce_key(key: str, tp: Any, path: str) -> Any:
    if tp is int:
        try:
            return int(key)
        except ValueError:
            raise _CoerceError(path, f"key {key!r} is not an integer") from None
    return _coerce(key, tp, path)


def _coerce_dataclass(value: Any, tp: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise _CoerceError(
            path, f"expected an object for {tp.__name__}, got {type(value).__name__}"
        )
    try:
        hints = typing.get_type_hints(tp)
    except Exception:
        hints = {}
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = [k for k in value if k not in fields or not fields[k].init]
    if unknown:
        known = ", ".join(n for n, f in fields.items() if f.init)
        raise _CoerceError(
            path, f"{tp.__name__} has no field {', '.join(map(repr, unknown))} (fields: {known})"
        )
    kwargs = {name: _coerce(v, hints.get(name, Any), f"{path}.{name}") for name, v in value.items()}
    missing = [
        n
        for n, f in fields.items()
        if f.init
        and n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _CoerceError(path, f"{tp.__name__} needs the field(s) {', '.join(missing)}")
    try:
        return tp(**kwargs)
    except Exception as exc:
        raise _CoerceError(path, f"{tp.__name__}(...) failed: {type(exc).__name__}: {exc}") from exc


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: dataclasses and models as objects, Decimal and UUID as
    strings, date-times in ISO 8601, durations in seconds, sets and tuples as lists, and
    an :class:`~wfe_core.serialization.Undecodable` (stored data of a type not
    registered here) as the JSON it was stored as."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Undecodable):
        try:
            return json.loads(value.raw)
        except (ValueError, RecursionError):
            return value.raw
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and _pydantic_model(type(value)):
        return dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        if isinstance(value, set | frozenset):
            with contextlib.suppress(TypeError):
                items.sort()
        return items
    return repr(value)
