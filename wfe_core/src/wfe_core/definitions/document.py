"""Reading a definition document: the text (JSON or YAML) to a Python object, checked
against the JSON Schema shipped with wfe (``schema.json`` beside this module), with
every error naming its path in the document (``Steps[2].Inputs``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from wfe_core.definitions.errors import DefinitionLoadError, DefinitionsUnavailable
from wfe_core.definitions.store import DEFINITION_FORMATS

__all__ = ["definition_schema", "format_path", "guess_format", "parse_text", "validate_document"]


def format_path(parts: Iterable[Any]) -> str:
    """A path in the document as text: ``["Steps", 2, "Inputs"]`` ->
    ``Steps[2].Inputs``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def guess_format(filename: str) -> str:
    """``json`` or ``yaml`` from a file name's extension; ``ValueError`` otherwise."""
    lower = filename.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    raise ValueError(
        f"cannot tell the format of {filename!r} from its extension; give the format (json or yaml)"
    )


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise DefinitionsUnavailable("pyyaml") from exc
    return yaml


def parse_text(text: str | bytes, format: str) -> Any:
    """The document as Python values (YAML through ``yaml.safe_load`` only); a byte
    order mark is ignored. :class:`DefinitionLoadError` when it does not parse."""
    if format not in DEFINITION_FORMATS:
        raise ValueError(f"format must be one of {DEFINITION_FORMATS}, not {format!r}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DefinitionLoadError("", f"the document is not UTF-8 text: {exc}") from exc
    if not isinstance(text, str):
        raise TypeError(f"a definition document is str or bytes, not {type(text).__name__}")
    text = text.lstrip("\ufeff")
    if format == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DefinitionLoadError(
                "", f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
    yaml = _yaml()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionLoadError("", f"not valid YAML{where}: {problem}") from exc


@cache
def definition_schema() -> dict[str, Any]:
    """The JSON Schema of definition documents (draft 2020-12)."""
    text = resources.files("wfe_core.definitions").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Any:
    try:
        import jsonschema
    except ImportError as exc:
        raise DefinitionsUnavailable("jsonschema") from exc
    cls = jsonschema.validators.validator_for(definition_schema())
    return cls(definition_schema())


def validate_document(document: Any) -> None:
    """Check ``document`` against the schema; :class:`DefinitionLoadError` naming the
    path of the most relevant error."""
    if not isinstance(document, dict):
        raise DefinitionLoadError(
            "", f"a definition is an object with Id, Version and Steps, not {document!r:.60}"
        )
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is None:
        return
    path = format_path(error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties":
        message = f"{message} (the properties allowed here are listed in the schema)"
    raise DefinitionLoadError(path, message)
