"""Definitions as data: workflows written as JSON or YAML documents in Workflow Core's
DSL shape, loaded with step and data types from an application registry only, inputs
and outputs written in a sandboxed expression language, stored with their version.

Importing this package needs nothing beyond wfe-core; loading a document needs the
``definitions`` extra (``pip install 'wfe-core[definitions]'``: simpleeval, PyYAML,
jsonschema), and says so when it is missing.

- :class:`DefinitionRegistry` -- the step and data types documents may name;
- :func:`load_definition` -- text to a :class:`~wfe_core.WorkflowDefinition`;
  :func:`parse_definition` checks a document without a registry;
- :class:`DefinitionRepository` -- how stores keep documents (``save_definition``,
  ``get_definition``, ``list_definitions``);
- ``WorkflowClient.register_definition`` / ``WorkflowHost.load_definition`` and
  ``wfe definitions load|list|show`` use them.

See ``docs/how-to/definitions.md`` for the document shape and the expression language.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.definitions.errors import (
    INSTALL_HINT,
    DefinitionLoadError,
    DefinitionNotFound,
    DefinitionsUnavailable,
    DefinitionVersionConflict,
)
from wfe_core.definitions.registry import DefinitionRegistry
from wfe_core.definitions.store import (
    DEFINITION_FORMATS,
    DefinitionRepository,
    DefinitionSummary,
    StoredDefinition,
    supports_definitions,
)

if TYPE_CHECKING:
    from wfe_core.definitions.loader import ParsedDefinition
    from wfe_core.steps import WorkflowDefinition

__all__ = [
    "DEFINITION_FORMATS",
    "INSTALL_HINT",
    "DefinitionLoadError",
    "DefinitionNotFound",
    "DefinitionRegistry",
    "DefinitionRepository",
    "DefinitionSummary",
    "DefinitionVersionConflict",
    "DefinitionsUnavailable",
    "StoredDefinition",
    "load_definition",
    "parse_definition",
    "supports_definitions",
]


def parse_definition(text: str | bytes, format: str = "json") -> ParsedDefinition:
    """Parse and check a document without an application registry: schema,
    expressions, step ids and references (:class:`DefinitionLoadError` naming the path
    of what is wrong)."""
    from wfe_core.definitions.loader import parse_definition as parse

    return parse(text, format)


def load_definition(
    text: str | bytes, format: str = "json", registry: DefinitionRegistry | None = None
) -> WorkflowDefinition:
    """Parse, check and build a document with ``registry`` (the built-in primitives
    only when None); the definition is not registered anywhere."""
    from wfe_core.definitions.loader import load_definition as load

    return load(text, format, registry)
