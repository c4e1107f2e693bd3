"""Definitions: the :class:`~wfe_core.definitions.DefinitionRepository` part of the SQL
provider (table ``wfe_definitions``, one per namespace). A version is inserted with
``ON CONFLICT DO NOTHING`` on ``(definition_id, version)``; a conflict is then told
apart from a repeat by comparing the stored text.

Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

from wfe_core.definitions.errors import DefinitionNotFound, DefinitionVersionConflict
from wfe_core.definitions.store import DefinitionSummary, StoredDefinition

from wfe_sql.definition_statements import (
    DEFINITION_COLUMNS,
    SUMMARY_COLUMNS,
    DefinitionStatements,
)
from wfe_sql.driver import Row
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.times import from_micros, to_micros

__all__ = ["SqlDefinitionRepository"]


class SqlDefinitionRepository(SqlRepositoryBase):
    """The definition store of the SQL provider."""

    async def _definition_statements(self) -> DefinitionStatements:
        await self._ready()
        stmts: DefinitionStatements = self.driver.cached(
            "wfe_sql.definitions", DefinitionStatements
        )
        return stmts

    @staticmethod
    def _load_definition(row: Row) -> StoredDefinition:
        r = dict(zip(DEFINITION_COLUMNS, row, strict=True))
        return StoredDefinition(
            definition_id=r["definition_id"],
            version=r["version"],
            format=r["format"],
            text=r["text"],
            create_time=from_micros(r["create_time"]),
        )

    async def save_definition(self, definition: StoredDefinition) -> bool:
        """Store a version; False when the same text is stored already,
        :class:`DefinitionVersionConflict` when another text is."""
        self.check_type(definition, StoredDefinition, "definition")
        definition.validate()
        s = await self._definition_statements()
        values = {
            "p_definition_id": definition.definition_id,
            "p_version": definition.version,
            "p_format": definition.format,
            "p_text": definition.text,
            "p_create_time": to_micros(definition.create_time, "create_time"),
        }
        if await self.driver.execute(s.insert.sql, s.insert.args(values)):
            return True
        stored = await self.get_definition(definition.definition_id, definition.version)
        if stored.text == definition.text and stored.format == definition.format:
            return False
        raise DefinitionVersionConflict(definition.definition_id, definition.version)

    async def get_definition(
        self, definition_id: str, version: int | None = None
    ) -> StoredDefinition:
        """The exact version, or the newest; :class:`DefinitionNotFound` when none."""
        s = await self._definition_statements()
        if version is None:
            stmt = s.select_newest
            row = await self.driver.fetchone(stmt.sql, stmt.args({"p_id": definition_id}))
        else:
            stmt = s.select_one
            row = await self.driver.fetchone(
                stmt.sql, stmt.args({"p_id": definition_id, "p_version": version})
            )
        if row is None:
            raise DefinitionNotFound(definition_id, version)
        return self._load_definition(row)

    async def list_definitions(self, definition_id: str | None = None) -> list[DefinitionSummary]:
        """Every stored version (of ``definition_id`` only, when given), by id and version."""
        s = await self._definition_statements()
        if definition_id is None:
            rows = await self.driver.fetchall(s.list_all.sql)
        else:
            rows = await self.driver.fetchall(
                s.list_one.sql, s.list_one.args({"p_id": definition_id})
            )
        out = []
        for row in rows:
            r = dict(zip(SUMMARY_COLUMNS, row, strict=True))
            out.append(
                DefinitionSummary(
                    r["definition_id"], r["version"], r["format"], from_micros(r["create_time"])
                )
            )
        return out
