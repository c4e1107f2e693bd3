"""The statements of the definition store (:mod:`wfe_sql.repository.definitions`),
built with SQLAlchemy Core and compiled once per dialect (:meth:`SqlDriver.cached`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from wfe_sql.driver import SqlDriver
from wfe_sql.schema import definitions

__all__ = ["DEFINITION_COLUMNS", "SUMMARY_COLUMNS", "DefinitionStatements"]

DEFINITION_COLUMNS: tuple[str, ...] = tuple(c.key for c in definitions.c)
"""Every column of ``wfe_definitions``, in the order the full ``SELECT``s return them."""
SUMMARY_COLUMNS: tuple[str, ...] = ("definition_id", "version", "format", "create_time")
"""The columns a listing returns (no text)."""


def _b(name: str) -> Any:
    return bindparam(f"p_{name}")


class DefinitionStatements:
    """The compiled definition statements for one dialect."""

    def __init__(self, driver: SqlDriver) -> None:
        c = driver.compile
        t = driver.tables.definitions
        columns = [t.c[n] for n in DEFINITION_COLUMNS]
        summary = [t.c[n] for n in SUMMARY_COLUMNS]
        self.insert = c(
            driver.insert(t)
            .values({t.c[n]: _b(n) for n in DEFINITION_COLUMNS})
            .on_conflict_do_nothing(index_elements=[t.c.definition_id, t.c.version])
        )
        self.select_one = c(
            select(*columns).where(t.c.definition_id == _b("id"), t.c.version == _b("version"))
        )
        self.select_newest = c(
            select(*columns)
            .where(t.c.definition_id == _b("id"))
            .order_by(t.c.version.desc())
            .limit(1)
        )
        self.list_all = c(select(*summary).order_by(t.c.definition_id, t.c.version))
        self.list_one = c(
            select(*summary).where(t.c.definition_id == _b("id")).order_by(t.c.version)
        )
