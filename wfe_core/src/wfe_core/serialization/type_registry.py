"""The allowlist of user types (dataclasses, pydantic models, enums) that stored data
may be rebuilt into: :class:`TypeRegistry`."""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any

from wfe_core.errors import SerializationError
from wfe_core.serialization._common import _SUPPORTED, _is_pydantic_model_class, _repr

__all__ = ["TypeRegistry"]


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
