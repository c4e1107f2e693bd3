"""The in-memory definition store (:class:`~wfe_core.definitions.DefinitionRepository`),
a mixin of :class:`~wfe_memory.MemoryPersistenceProvider`. Each namespace's provider
keeps its own documents."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC

from wfe_core.capabilities import Capability
from wfe_core.definitions.errors import DefinitionNotFound, DefinitionVersionConflict
from wfe_core.definitions.store import DefinitionSummary, StoredDefinition

from wfe_memory.schedules import MemoryScheduleStore

__all__ = ["MemoryDefinitionStore"]


class MemoryDefinitionStore(MemoryScheduleStore):
    """Definition documents kept in a dict by ``(id, version)``."""

    def __init__(self, *, capabilities: Iterable[Capability] | None = None) -> None:
        super().__init__(capabilities=capabilities)
        self._definitions: dict[tuple[str, int], StoredDefinition] = {}

    async def close(self) -> None:
        """Drop the definitions too."""
        await super().close()
        self._definitions.clear()

    async def save_definition(self, definition: StoredDefinition) -> bool:
        """Store a version; False when the same text is stored already,
        :class:`DefinitionVersionConflict` when another text is."""
        self.check_type(definition, StoredDefinition, "definition")
        definition.validate()
        await self._enter()
        key = (definition.definition_id, definition.version)
        known = self._definitions.get(key)
        if known is not None:
            if known.text == definition.text and known.format == definition.format:
                return False
            raise DefinitionVersionConflict(*key)
        self._definitions[key] = StoredDefinition(
            definition.definition_id,
            definition.version,
            definition.format,
            definition.text,
            definition.create_time.astimezone(UTC),
        )
        return True

    async def get_definition(
        self, definition_id: str, version: int | None = None
    ) -> StoredDefinition:
        """The exact version, or the newest; :class:`DefinitionNotFound` when none."""
        await self._enter()
        if version is not None:
            found = self._definitions.get((definition_id, version))
        else:
            versions = [d for (i, _v), d in self._definitions.items() if i == definition_id]
            found = max(versions, key=lambda d: d.version) if versions else None
        if found is None:
            raise DefinitionNotFound(definition_id, version)
        return found

    async def list_definitions(self, definition_id: str | None = None) -> list[DefinitionSummary]:
        """Every stored version (of ``definition_id`` only, when given), by id and version."""
        await self._enter()
        return [
            self._definitions[key].summary
            for key in sorted(self._definitions)
            if definition_id is None or key[0] == definition_id
        ]
