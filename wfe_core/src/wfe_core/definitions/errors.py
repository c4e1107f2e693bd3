"""The errors of definitions as data: a document that does not load, the optional
dependencies missing, a stored version that would change."""

from __future__ import annotations

from wfe_core.errors import DefinitionError, NotFoundError, WfeError

__all__ = [
    "INSTALL_HINT",
    "DefinitionLoadError",
    "DefinitionNotFound",
    "DefinitionVersionConflict",
    "DefinitionsUnavailable",
]

INSTALL_HINT = "pip install 'wfe-core[definitions]'"
"""How to install what the loader needs (simpleeval, PyYAML, jsonschema)."""


class DefinitionLoadError(DefinitionError):
    """A definition document does not load: ``path`` names the place in the document
    (``Steps[2].Do[0][1].Inputs.Value``; empty for the document as a whole) and
    ``problem`` says what is wrong there."""

    def __init__(self, path: str, problem: str) -> None:
        where = path or "(document)"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.problem = problem


class DefinitionsUnavailable(WfeError, ImportError):
    """The optional dependencies of definitions as data are not installed."""

    def __init__(self, missing: str) -> None:
        super().__init__(
            f"loading workflow definitions from JSON or YAML needs {missing!r}, which is "
            f"not installed: {INSTALL_HINT}"
        )
        self.missing = missing


class DefinitionVersionConflict(DefinitionError):
    """A different document is already stored (or registered) under this definition id
    and version."""

    def __init__(self, definition_id: str, version: int) -> None:
        super().__init__(
            f"definition {definition_id!r} version {version} is already stored with a "
            "different text; a stored version never changes (instances may be running on "
            "it): bump Version in the document to store the new one"
        )
        self.definition_id = definition_id
        self.version = version


class DefinitionNotFound(NotFoundError):
    """No stored definition has this id (and version)."""

    def __init__(self, definition_id: str, version: int | None = None) -> None:
        which = "" if version is None else f" version {version}"
        super().__init__(f"no stored definition {definition_id!r}{which}")
        self.definition_id = definition_id
        self.version = version
