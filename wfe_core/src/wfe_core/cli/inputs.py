"""Reading command-line input: JSON options (``--data``, from text, a file or stdin)
and ISO 8601 date-times, refused with a message naming the option when unusable."""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from wfe_core.coercion import shorten

__all__ = ["parse_json", "parse_when"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(text: str | None, option: str = "--data") -> Any:
    """Parse a JSON option (``@path`` reads a file, ``-`` or ``@-`` reads stdin; both
    must be UTF-8). Anything that is not plain, standard JSON -- ``NaN`` or
    ``Infinity``, a number too large for a float, an integer of more digits than Python
    converts, nesting deeper than Python's parser goes, a lone surrogate -- is refused
    with ``click.BadParameter`` naming ``option``."""
    if text is None:
        return None
    source = "JSON"
    if text in ("-", "@-"):
        text, source = _read_stdin(option), "JSON from stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint=option
            ) from exc
        text, source = _utf8(raw, str(path), option), f"JSON in {path}"
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        line = exc.doc.splitlines()[exc.lineno - 1] if exc.doc.splitlines() else ""
        pointer = f"\n    {line}\n    {' ' * (exc.colno - 1)}^" if len(line) <= 200 else ""
        raise click.BadParameter(
            f"malformed {source}: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos}){pointer}",
            param_hint=option,
        ) from exc
    except RecursionError:
        raise click.BadParameter(
            f"{source} is nested too deeply (more than about {sys.getrecursionlimit()} "
            "levels of arrays and objects)",
            param_hint=option,
        ) from None
    except ValueError as exc:  # NaN, 1e999, an integer of more than 4300 digits
        raise click.BadParameter(f"{source} cannot be used: {exc}", param_hint=option) from None
    where = _lone_surrogate(value)
    if where is not None:
        raise click.BadParameter(
            f"{source} holds a lone surrogate (a \\ud800-\\udfff escape without its pair) "
            f"at {where}: that is not Unicode text and cannot be stored",
            param_hint=option,
        )
    return value


def _read_stdin(option: str) -> str:
    """All of stdin as UTF-8 text (refused with ``click.BadParameter`` if it is not)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return _utf8(buffer.read(), "stdin", option)
    text = sys.stdin.read()
    # A text stream decoded with "surrogateescape" (the C locale) hides bytes that are
    # not UTF-8 as lone surrogates.
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise click.BadParameter(
            f"stdin is not UTF-8 text (undecodable byte at character {bad.start()})",
            param_hint=option,
        )
    return text


def _utf8(raw: bytes, where: str, option: str) -> str:
    """``raw`` decoded as UTF-8 (a byte-order mark is dropped), or ``click.BadParameter``."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(
            f"{where} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            "cannot be decoded (save it as UTF-8)",
            param_hint=option,
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {shorten(text)} is too large for a float")
    return number


def _lone_surrogate(value: Any) -> str | None:
    """The path (``data.items[2].name``) of the first string or key in parsed JSON that
    holds a lone surrogate, or None. Iterative: any depth json.loads returned is fine."""
    stack: list[tuple[Any, str]] = [(value, "data")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return path
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, dict):
            for key, v in item.items():
                sub = f"{path}[{json.dumps(key)}]"
                if _SURROGATE.search(key) is not None:
                    return sub
                stack.append((v, sub))
    return None


def parse_when(text: str, option: str) -> datetime:
    """An ISO 8601 date-time; one without an offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{shorten(text)!r} is not an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z",
            param_hint=option,
        ) from exc
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        raise click.BadParameter(
            f"{shorten(text)!r} is out of range: in UTC it falls outside the years 1 to 9999",
            param_hint=option,
        ) from None
