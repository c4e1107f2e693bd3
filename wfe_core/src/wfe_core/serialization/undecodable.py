"""Stored user values this process cannot rebuild: :class:`Undecodable` and the
helpers that find them in a workflow instance."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from wfe_core.serialization._common import _repr

if TYPE_CHECKING:
    from wfe_core.models import WorkflowInstance

__all__ = ["Undecodable", "has_undecodable", "undecodable_fields"]


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
