"""Stored definitions: the :class:`DefinitionRepository` part of a store.

A definition loaded from data is kept in the store as its text with its id, version and
format, so every host on the store builds the same one; a stored ``(id, version)``
never changes (:class:`~wfe_core.definitions.errors.DefinitionVersionConflict`), which
is what lets an instance keep running on the version it started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from wfe_core.models import utcnow
from wfe_core.persistence import check_aware, check_key

__all__ = [
    "DEFINITION_FORMATS",
    "DefinitionRepository",
    "DefinitionSummary",
    "StoredDefinition",
    "supports_definitions",
]

DEFINITION_FORMATS = ("json", "yaml")
"""The formats a definition document can be written in."""


@dataclass(frozen=True)
class DefinitionSummary:
    """One stored version, without its text (what listing returns)."""

    definition_id: str
    version: int
    format: str
    create_time: datetime


@dataclass(frozen=True)
class StoredDefinition:
    """A stored definition document: id, version, format (``json`` / ``yaml``), the
    text as loaded and when it was first stored."""

    definition_id: str
    version: int
    format: str
    text: str
    create_time: datetime = field(default_factory=utcnow)

    def validate(self) -> None:
        """Raise ``TypeError`` / ``ValueError`` naming what is wrong."""
        check_key(self.definition_id, "definition_id")
        if not self.definition_id:
            raise ValueError("definition_id must not be empty")
        if not isinstance(self.version, int) or isinstance(self.version, bool):
            raise TypeError(f"version must be an int, not {self.version!r}")
        if self.version < 1:
            raise ValueError(f"version must be >= 1, not {self.version}")
        if self.format not in DEFINITION_FORMATS:
            raise ValueError(f"format must be one of {DEFINITION_FORMATS}, not {self.format!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, not {type(self.text).__name__}")
        if "\x00" in self.text:
            raise ValueError("text must not hold a NUL character")
        check_aware(self.create_time, "create_time")

    @property
    def summary(self) -> DefinitionSummary:
        """The version without its text."""
        return DefinitionSummary(self.definition_id, self.version, self.format, self.create_time)


@runtime_checkable
class DefinitionRepository(Protocol):
    """The store of definition documents. Every in-repo provider implements it; a client
    or host stores and loads definitions through a provider that does
    (:func:`supports_definitions`)."""

    async def save_definition(self, definition: StoredDefinition) -> bool:
        """Store a version (validated); True when it was new. The same id and version
        with the same text (and format) again changes nothing and returns False; with
        another text it raises
        :class:`~wfe_core.definitions.errors.DefinitionVersionConflict`."""
        ...

    async def get_definition(
        self, definition_id: str, version: int | None = None
    ) -> StoredDefinition:
        """The exact version, or the newest when ``version`` is None;
        :class:`~wfe_core.definitions.errors.DefinitionNotFound` when there is none."""
        ...

    async def list_definitions(self, definition_id: str | None = None) -> list[DefinitionSummary]:
        """Every stored version (of ``definition_id`` only, when given), by id, then
        version."""
        ...


def supports_definitions(provider: object) -> bool:
    """Whether ``provider`` implements :class:`DefinitionRepository`."""
    return isinstance(provider, DefinitionRepository)
