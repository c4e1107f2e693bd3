"""The expression language of definition documents: Python expressions, evaluated by
`simpleeval <https://github.com/danthedeckie/simpleeval>`_ (never ``eval``), over a few
names only.

What an expression may contain (checked when the document loads, so a mistake is a
load error naming its place in the document):

- literals (numbers, strings, ``True`` / ``False`` / ``None``, lists, tuples, dicts,
  sets, f-strings), arithmetic, comparisons, ``and`` / ``or`` / ``not``,
  ``x if c else y``, attribute access (``data.total``), indexing and slicing
  (``data["k"]``, ``data.items[0]``), calls of the helpers below and of methods;
- the names ``data`` (the workflow data), and where they apply ``step`` (the step's
  attributes, in ``Outputs``), ``context`` (in ``Inputs``: ``item``, ``workflow_id``,
  ``reference``, ``step_id``, ``step_name``, ``workflow``) and ``outcome`` (in
  ``SelectNextStep``), plus the helpers.

What it may not: any name starting with ``_`` or attribute ``format``, ``mro``...
(simpleeval's deny list), ``lambda``, comprehensions, assignments, imports, names not
listed here. Workflow Core's C# spellings are rewritten on the *tokens* (module
:mod:`tokenize`, never on raw text, so strings are left alone): ``!x`` -> ``not x``
(``!=`` stays), ``&&`` -> ``and``, ``||`` -> ``or``, ``true`` / ``false`` / ``null``
-> ``True`` / ``False`` / ``None``.

Helpers: ``DateTime.Now`` / ``DateTime.UtcNow`` / ``DateTime.Today`` (aware UTC
datetimes), ``TimeSpan.FromMilliseconds/FromSeconds/FromMinutes/FromHours/FromDays(n)``,
``object.Equals(a, b)``, ``now()``, ``timedelta(days=, hours=, minutes=, seconds=,
milliseconds=)``, ``len``, ``str``, ``int``, ``float``, ``bool``, ``abs``, ``min``,
``max``, ``round``, ``sum``.

Property names: ``step.Value`` and ``context.Item`` also find the snake_case attribute
(``value``, ``item``), so Workflow Core's PascalCase works on Python steps; ``data.X``
is looked up as written (a dict's keys too: ``data.total`` reads ``data["total"]``).
"""

from __future__ import annotations

import ast
import io
import re
import token
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from wfe_core.definitions.errors import DefinitionLoadError, DefinitionsUnavailable
from wfe_core.errors import WfeError
from wfe_core.models import utcnow

try:
    import simpleeval  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise DefinitionsUnavailable("simpleeval") from exc

__all__ = [
    "CONTEXT_NAMES",
    "HELPERS",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "SELECT_NAMES",
    "ContextView",
    "Expression",
    "ExpressionError",
    "OutputTarget",
    "StepView",
    "as_duration",
    "attribute_candidates",
    "compile_expression",
    "compile_target",
    "parse_timespan",
    "rewrite",
]

INPUT_NAMES = frozenset({"data", "context"})
"""The names an ``Inputs`` expression sees."""
OUTPUT_NAMES = frozenset({"data", "step"})
"""The names an ``Outputs`` expression sees."""
CONTEXT_NAMES = frozenset({"data"})
"""The names a ``CancelCondition`` sees."""
SELECT_NAMES = frozenset({"data", "outcome"})
"""The names a ``SelectNextStep`` expression sees."""


class ExpressionError(WfeError):
    """An expression failed while the workflow ran (a step error, handled by the
    step's error behaviour); the message names its place in the document."""


# ---------------------------------------------------------------- helpers


class _DateTime:
    """``DateTime.Now`` and friends: aware UTC datetimes from the engine's clock."""

    __slots__ = ()

    @property
    def Now(self) -> datetime:
        """The current time (aware, UTC)."""
        return utcnow()

    @property
    def UtcNow(self) -> datetime:
        """The current time (aware, UTC)."""
        return utcnow()

    @property
    def Today(self) -> datetime:
        """Midnight UTC today."""
        return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


class _TimeSpan:
    """``TimeSpan.FromSeconds(n)`` and friends, giving ``timedelta``s."""

    __slots__ = ()

    @staticmethod
    def FromMilliseconds(n: float) -> timedelta:
        """``n`` milliseconds."""
        return timedelta(milliseconds=n)

    @staticmethod
    def FromSeconds(n: float) -> timedelta:
        """``n`` seconds."""
        return timedelta(seconds=n)

    @staticmethod
    def FromMinutes(n: float) -> timedelta:
        """``n`` minutes."""
        return timedelta(minutes=n)

    @staticmethod
    def FromHours(n: float) -> timedelta:
        """``n`` hours."""
        return timedelta(hours=n)

    @staticmethod
    def FromDays(n: float) -> timedelta:
        """``n`` days."""
        return timedelta(days=n)


class _Object:
    """``object.Equals(a, b)`` as Workflow Core's loader reads it: against a bool,
    the truth of ``a``; else equality (``None`` equals only ``None``)."""

    __slots__ = ()

    @staticmethod
    def Equals(a: Any, b: Any) -> bool:
        """Whether ``a`` equals ``b``."""
        if isinstance(b, bool):
            return bool(a) is b
        return bool(a == b)


def _timedelta(
    days: float = 0,
    hours: float = 0,
    minutes: float = 0,
    seconds: float = 0,
    milliseconds: float = 0,
) -> timedelta:
    return timedelta(
        days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=milliseconds
    )


_HELPER_NAMES: dict[str, Any] = {
    "DateTime": _DateTime(),
    "TimeSpan": _TimeSpan(),
    "object": _Object(),
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "now": utcnow,
    "timedelta": _timedelta,
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "sum": sum,
}
HELPERS = frozenset(_HELPER_NAMES) | frozenset(_FUNCTIONS)
"""The helper names every expression may use besides its own names."""

# ---------------------------------------------------------------- views


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def attribute_candidates(name: str) -> list[str]:
    """The attribute names a document's property name may mean, in order: as written,
    snake_case (``EventName`` -> ``event_name``), lower case."""
    out = [name, _CAMEL.sub(r"_\1", name).lower(), name.lower()]
    return list(dict.fromkeys(out))


class StepView:
    """What ``step`` is in an output expression: the step body's attributes (not its
    methods), found by name or its snake_case form."""

    __slots__ = ("_body",)

    def __init__(self, body: object) -> None:
        self._body = body

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        body = self._body
        for candidate in attribute_candidates(name):
            try:
                value = getattr(body, candidate)
            except AttributeError:
                continue
            if callable(value) and not isinstance(value, type):
                raise AttributeError(f"{name} is a method, not a value of the step")
            return value
        raise AttributeError(f"the step has no attribute {name!r}")


class _WorkflowView:
    __slots__ = ("definition_id", "id", "reference", "version")

    def __init__(self, workflow: Any) -> None:
        self.id = workflow.id
        self.reference = workflow.reference
        self.version = workflow.version
        self.definition_id = workflow.workflow_definition_id

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        for candidate in attribute_candidates(name)[1:]:
            if candidate in self.__slots__:
                return object.__getattribute__(self, candidate)
        raise AttributeError(name)


class ContextView:
    """What ``context`` is in an input expression: the running step's ``item``,
    ``workflow_id``, ``reference``, ``step_id``, ``step_name`` and ``workflow`` (``id``,
    ``reference``, ``version``, ``definition_id``) -- never the host."""

    __slots__ = ("item", "reference", "step_id", "step_name", "workflow", "workflow_id")

    def __init__(self, context: Any) -> None:
        self.item = context.item
        self.workflow_id = context.workflow.id
        self.reference = context.workflow.reference
        self.step_id = context.step.id
        self.step_name = context.step.label
        self.workflow = _WorkflowView(context.workflow)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        for candidate in attribute_candidates(name)[1:]:
            if candidate in self.__slots__:
                return object.__getattribute__(self, candidate)
        raise AttributeError(f"context has no {name!r}")


# ---------------------------------------------------------------- rewriting


_LITERALS = {"true": "True", "false": "False", "null": "None"}


def rewrite(text: str) -> str:
    """Workflow Core's C# spellings as Python, on the tokens (see the module docs).

    Raises ``SyntaxError`` when the text cannot be tokenized."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError) as exc:
        raise SyntaxError(str(exc.args[0] if exc.args else exc)) from exc
    lines = text.splitlines(keepends=True) or [""]
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    edits: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        prev = tokens[i - 1] if i > 0 else None
        if tok.string == "!" and tok.type in (token.ERRORTOKEN, token.OP):
            edits.append((offset(tok.start), offset(tok.end), " not "))
        elif (
            tok.type == token.OP
            and tok.string in ("&", "|")
            and nxt is not None
            and nxt.string == tok.string
            and nxt.start == tok.end
        ):
            word = " and " if tok.string == "&" else " or "
            edits.append((offset(tok.start), offset(nxt.end), word))
            i += 1
        elif (
            tok.type == token.NAME
            and tok.string in _LITERALS
            and not (prev is not None and prev.string == ".")
        ):
            edits.append((offset(tok.start), offset(tok.end), _LITERALS[tok.string]))
        i += 1
    out = text
    for start, end, new in reversed(edits):
        out = out[:start] + new + out[end:]
    return out.strip()


# ---------------------------------------------------------------- checking

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Name,
    ast.Load,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.boolop,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
)
_DENIED_ATTRIBUTES = frozenset(simpleeval.DISALLOW_METHODS)
_WHAT = {
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.NamedExpr: "an assignment (:=)",
    ast.Starred: "unpacking (*x)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _check(tree: ast.AST, names: frozenset[str]) -> None:
    """Raise ``ValueError`` for anything outside the language (see the module docs)."""
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            what = _WHAT.get(type(node), type(node).__name__)
            raise ValueError(f"{what} is not allowed in an expression")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr in _DENIED_ATTRIBUTES:
                raise ValueError(f"attribute {node.attr!r} is not allowed")
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise ValueError(f"name {node.id!r} is not allowed")
            if node.id not in names and node.id not in HELPERS:
                known = ", ".join(sorted(names))
                raise ValueError(
                    f"unknown name {node.id!r}: an expression here can use {known} and "
                    "the helpers (DateTime, TimeSpan, object, now, timedelta, len, str, "
                    "int, float, bool, abs, min, max, round, sum)"
                )
        elif isinstance(node, ast.keyword) and node.arg is None:
            raise ValueError("**keyword unpacking is not allowed")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id not in _FUNCTIONS
        ):
            raise ValueError(f"{node.func.id!r} is not a function you can call here")


@dataclass(frozen=True)
class Expression:
    """One compiled expression of a document: ``source`` as written, ``python`` after
    the rewrite, ``path`` in the document. :meth:`evaluate` runs it in the sandbox."""

    source: str
    python: str
    path: str
    tree: ast.expr

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The value of the expression with ``names`` (``data``, ``step``...);
        :class:`ExpressionError` naming the document path when it fails."""
        evaluator = simpleeval.EvalWithCompoundTypes(
            names={**_HELPER_NAMES, **names}, functions=_FUNCTIONS
        )
        try:
            return evaluator.eval(self.python, previously_parsed=self.tree)
        except Exception as exc:
            raise ExpressionError(
                f"{self.path}: {self.source!r} failed: {type(exc).__name__}: {exc}"
            ) from exc


def compile_expression(source: object, path: str, names: frozenset[str]) -> Expression:
    """Parse and check an expression of the document once, at load time;
    :class:`~wfe_core.definitions.errors.DefinitionLoadError` naming ``path`` when it
    is not a valid expression of the language."""
    if not isinstance(source, str):
        raise DefinitionLoadError(path, f"an expression must be a string, not {source!r}")
    if not source.strip():
        raise DefinitionLoadError(path, "the expression is empty")
    try:
        python = rewrite(source)
        tree = ast.parse(python, mode="eval")
        _check(tree, names)
    except SyntaxError as exc:
        raise DefinitionLoadError(path, f"{source!r} is not a valid expression: {exc.msg}") from exc
    except ValueError as exc:
        raise DefinitionLoadError(path, f"{source!r}: {exc}") from exc
    return Expression(source, python, path, tree.body)


# ---------------------------------------------------------------- output targets


@dataclass(frozen=True)
class OutputTarget:
    """Where an output goes, relative to the workflow data: attribute names and
    ``[key]`` indexes (``Counter1``, ``board.total``, ``extra["test"]``)."""

    source: str
    path: str
    segments: tuple[tuple[bool, Any], ...]
    """``(is_key, name_or_key)`` from the data down."""

    @staticmethod
    def _get(obj: Any, is_key: bool, name: Any) -> Any:
        if is_key or isinstance(obj, dict):
            return obj[name]
        return getattr(obj, name)

    def assign(self, data: Any, value: Any) -> None:
        """Set the target in ``data`` to ``value`` (a dict takes ``.name`` as a key);
        :class:`ExpressionError` naming the document path when it cannot."""
        obj = data
        try:
            for is_key, name in self.segments[:-1]:
                obj = self._get(obj, is_key, name)
                if obj is None:
                    raise ValueError(f"{name!r} is None")
            is_key, name = self.segments[-1]
            if is_key or isinstance(obj, dict):
                obj[name] = value
            else:
                setattr(obj, name, value)
        except Exception as exc:
            raise ExpressionError(
                f"{self.path}: cannot set {self.source!r} on the data: {type(exc).__name__}: {exc}"
            ) from exc


def compile_target(source: str, path: str) -> OutputTarget:
    """Parse an output target once, at load time (see :class:`OutputTarget`)."""
    try:
        node = ast.parse(rewrite(source), mode="eval").body
    except SyntaxError as exc:
        raise DefinitionLoadError(path, f"{source!r} is not a valid output target") from exc
    segments: list[tuple[bool, Any]] = []
    while True:
        if isinstance(node, ast.Name):
            segments.append((False, node.id))
            break
        if isinstance(node, ast.Attribute):
            segments.append((False, node.attr))
            node = node.value
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str | int)
            and not isinstance(node.slice.value, bool)
        ):
            segments.append((True, node.slice.value))
            node = node.value
        else:
            raise DefinitionLoadError(
                path,
                f"{source!r} is not an output target: use names, '.name' and '[\"key\"]' "
                '(relative to the data), e.g. total or extra["key"]',
            )
    segments.reverse()
    for is_key, name in segments:
        if not is_key and name.startswith("_"):
            raise DefinitionLoadError(path, f"{source!r}: attribute {name!r} is not allowed")
    return OutputTarget(source, path, tuple(segments))


# ---------------------------------------------------------------- durations

_TIMESPAN = re.compile(
    r"^(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})"
    r"(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?$"
)


def parse_timespan(text: str) -> timedelta:
    """A .NET ``TimeSpan`` string (``[-][d.]hh:mm[:ss[.fffffff]]``) as a timedelta;
    ``ValueError`` otherwise."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write '[d.]hh:mm:ss' (e.g. '00:00:10') or a "
            "number of seconds"
        )
    fraction = match["f"] or "0"
    value = timedelta(
        days=int(match["days"] or 0),
        hours=int(match["h"]),
        minutes=int(match["m"]),
        seconds=int(match["s"] or 0),
        microseconds=int(fraction.ljust(7, "0")[:6]),
    )
    return -value if match["sign"] else value


def as_duration(value: Any, what: str) -> timedelta | None:
    """A duration given as a ``timedelta``, a number of seconds or a TimeSpan string;
    None stays None. ``ValueError`` naming ``what`` otherwise."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        try:
            return parse_timespan(value)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    raise ValueError(f"{what}: expected a duration, got {value!r}")
