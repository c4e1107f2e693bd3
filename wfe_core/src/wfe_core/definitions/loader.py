"""From a definition document to a :class:`~wfe_core.steps.WorkflowDefinition`.

Two stages:

1. :func:`parse_definition` -- no application needed: the text is parsed, checked
   against the schema, every expression and output target is compiled, step ids are
   checked unique and every ``NextStepId`` / ``SelectNextStep`` reference is checked.
2. :func:`build_definition` -- with the application's
   :class:`~wfe_core.definitions.registry.DefinitionRegistry`: ``StepType`` and
   ``DataType`` are resolved there (only there), inputs are checked against the step
   types' attributes, and the numbered steps are made.

The steps are numbered as Workflow Core numbers them: depth first, a step before its
``CompensateWith`` steps, those before its ``Do`` branches; the document's first step
is the one an instance starts on. As in Workflow Core, a step goes on only where its
``NextStepId`` (or ``SelectNextStep``) says: a step without one ends its branch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from wfe_core.definitions.bodies import SelectingBody, SelectOutcome
from wfe_core.definitions.document import parse_text, validate_document
from wfe_core.definitions.errors import DefinitionLoadError
from wfe_core.definitions.expressions import (
    CONTEXT_NAMES,
    INPUT_NAMES,
    OUTPUT_NAMES,
    SELECT_NAMES,
    ContextView,
    Expression,
    ExpressionError,
    OutputTarget,
    StepView,
    as_duration,
    attribute_candidates,
    compile_expression,
    compile_target,
)
from wfe_core.definitions.registry import DefinitionRegistry, StepType
from wfe_core.steps import (
    ErrorBehavior,
    Outcome,
    StepBody,
    StepContext,
    WorkflowDefinition,
    WorkflowStep,
    make_body,
)

__all__ = ["ParsedDefinition", "build_definition", "load_definition", "parse_definition"]


@dataclass
class _Input:
    """A compiled input: an expression, a constant, or an object template."""

    name: str
    path: str
    value: Any  # Expression | template (dict/list with Expressions inside) | constant


@dataclass
class _Step:
    index: int
    path: str
    doc: dict[str, Any]
    inputs: list[_Input] = field(default_factory=list)
    outputs: list[tuple[OutputTarget, Expression]] = field(default_factory=list)
    selects: list[tuple[str, Expression]] = field(default_factory=list)
    cancel: Expression | None = None
    children: list[int] = field(default_factory=list)
    compensation: int | None = None
    is_compensation: bool = False
    next_step: int | None = None
    select_targets: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ParsedDefinition:
    """A checked document: its id, version, description and the steps it flattens to,
    with every expression compiled. :func:`build_definition` turns it into a
    definition with an application's registry."""

    definition_id: str
    version: int
    description: str | None
    data_type_name: str | None
    format: str
    text: str
    document: dict[str, Any]
    steps: tuple[_Step, ...]


def _template(value: Any, path: str) -> Any:
    """An object input: ``@key`` values are expressions, the rest constants."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}"
            if isinstance(key, str) and key.startswith("@"):
                out[key] = compile_expression(item, sub, INPUT_NAMES)
            else:
                out[key] = _template(item, sub)
        return out
    if isinstance(value, list):
        return [_template(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _flatten(docs: list[dict[str, Any]], base: str, out: list[_Step], comp: bool) -> list[int]:
    indexes = []
    for i, doc in enumerate(docs):
        step = _Step(len(out), f"{base}[{i}]", doc, is_compensation=comp)
        out.append(step)
        indexes.append(step.index)
        comp_docs = doc.get("CompensateWith") or []
        if comp_docs:
            firsts = _flatten(comp_docs, f"{step.path}.CompensateWith", out, True)
            step.compensation = firsts[0]
        for b, branch in enumerate(doc.get("Do") or []):
            firsts = _flatten(branch, f"{step.path}.Do[{b}]", out, False)
            step.children.append(firsts[0])
    return indexes


def _key(name: str) -> str:
    return f".{name}" if name.isidentifier() else f"[{json.dumps(name)}]"


def _compile_step(step: _Step) -> None:
    doc, path = step.doc, step.path
    for name, value in (doc.get("Inputs") or {}).items():
        where = f"{path}.Inputs{_key(name)}"
        if isinstance(value, str):
            step.inputs.append(_Input(name, where, compile_expression(value, where, INPUT_NAMES)))
        else:
            step.inputs.append(_Input(name, where, _template(value, where)))
    for target, value in (doc.get("Outputs") or {}).items():
        where = f"{path}.Outputs{_key(target)}"
        step.outputs.append(
            (compile_target(target, where), compile_expression(value, where, OUTPUT_NAMES))
        )
    for target, value in (doc.get("SelectNextStep") or {}).items():
        where = f"{path}.SelectNextStep{_key(target)}"
        step.selects.append((target, compile_expression(value, where, SELECT_NAMES)))
    if doc.get("CancelCondition") is not None:
        step.cancel = compile_expression(
            doc["CancelCondition"], f"{path}.CancelCondition", CONTEXT_NAMES
        )


def parse_definition(text: str | bytes, format: str = "json") -> ParsedDefinition:
    """Parse and check a document (see the module docs, stage 1);
    :class:`~wfe_core.definitions.errors.DefinitionLoadError` naming the path of what
    is wrong."""
    document = parse_text(text, format)
    validate_document(document)
    steps: list[_Step] = []
    _flatten(document["Steps"], "Steps", steps, False)
    by_id: dict[str, _Step] = {}
    for step in steps:
        ext = step.doc.get("Id")
        if ext is None:
            continue
        if ext in by_id:
            raise DefinitionLoadError(
                f"{step.path}.Id", f"step id {ext!r} is already used by {by_id[ext].path}"
            )
        by_id[ext] = step
    for step in steps:
        _compile_step(step)
        nxt = step.doc.get("NextStepId")
        if nxt is not None:
            target = by_id.get(nxt)
            if target is None:
                raise DefinitionLoadError(f"{step.path}.NextStepId", f"no step has Id {nxt!r}")
            step.next_step = target.index
        for key, _expr in step.selects:
            target = by_id.get(key)
            if target is None:
                raise DefinitionLoadError(
                    f"{step.path}.SelectNextStep.{key}", f"no step has Id {key!r}"
                )
            step.select_targets.append(target.index)
    raw = text.decode("utf-8-sig") if isinstance(text, bytes) else text
    return ParsedDefinition(
        definition_id=document["Id"],
        version=document["Version"],
        description=document.get("Description") or None,
        data_type_name=document.get("DataType"),
        format=format,
        text=raw.lstrip("\ufeff"),
        document=document,
        steps=tuple(steps),
    )


# ---------------------------------------------------------------- building


def _attributes(cls: type[Any]) -> set[str]:
    """The attributes a step class declares (annotated or with a class value)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (object, StepBody):
            continue
        names.update(getattr(klass, "__annotations__", {}))
        for name, value in vars(klass).items():
            if not callable(value) and not isinstance(value, property | staticmethod):
                names.add(name)
    return {n for n in names if not n.startswith("_")}


def _input_attribute(entry: StepType, name: str, path: str) -> str:
    target = entry.target
    if not (isinstance(target, type) and issubclass(target, StepBody)):
        raise DefinitionLoadError(
            path,
            f"step type {entry.name!r} is a function: it takes no Inputs (register a "
            "StepBody subclass whose attributes are its inputs)",
        )
    mapped = entry.inputs.get(name)
    if mapped is not None:
        return mapped
    known = _attributes(target)
    for candidate in attribute_candidates(name):
        if candidate in known:
            return candidate
    listed = ", ".join(sorted(entry.inputs or known)) or "none"
    raise DefinitionLoadError(
        path,
        f"step type {entry.name!r} has no input {name!r} (its inputs: {listed})",
    )


def _resolve_template(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, Expression):
        return value.evaluate(names)
    if isinstance(value, dict):
        return {
            (k[1:] if isinstance(k, str) and k.startswith("@") else k): _resolve_template(v, names)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve_template(v, names) for v in value]
    return value


def _input_fn(value: Any, duration: bool, path: str) -> Callable[[Any, StepContext[Any]], Any]:
    def fn(data: Any, context: StepContext[Any]) -> Any:
        result = _resolve_template(value, {"data": data, "context": ContextView(context)})
        if duration:
            try:
                return as_duration(result, path)
            except ValueError as exc:
                raise ExpressionError(str(exc)) from None
        return result

    return fn


def _output_fn(target: OutputTarget, expr: Expression) -> Callable[[StepBody, Any], None]:
    def apply(body: StepBody, data: Any) -> None:
        target.assign(data, expr.evaluate({"step": StepView(body), "data": data}))

    return apply


def _cancel_fn(expr: Expression) -> Callable[[Any], bool]:
    return lambda data: bool(expr.evaluate({"data": data}))


def _selector(expr: Expression) -> Callable[[Any, Any], bool]:
    return lambda data, outcome: bool(expr.evaluate({"data": data, "outcome": outcome}))


def _behavior(value: str | None) -> ErrorBehavior | None:
    return None if value is None else ErrorBehavior(value.lower())


def _interval(value: Any, path: str) -> timedelta | None:
    try:
        return as_duration(value, path)
    except ValueError as exc:
        raise DefinitionLoadError(path, str(exc)) from None


def _make_step(src: _Step, registry: DefinitionRegistry) -> WorkflowStep:
    doc = src.doc
    type_name = doc["StepType"]
    entry = registry.find_step(type_name)
    if entry is None:
        raise DefinitionLoadError(
            f"{src.path}.StepType",
            f"unknown step type {type_name!r}: a document can only name step types the "
            f"application registered (registry.step({type_name!r}, YourStep)); nothing "
            "is ever imported by name",
        )
    if entry.builtin:
        factory: Callable[[], StepBody] = entry.target
        body_name, thread = attribute_candidates(entry.name)[1], False
    else:
        factory, body_name, thread = make_body(entry.target, f"{src.path}.StepType")
    if src.children and not entry.container:
        raise DefinitionLoadError(f"{src.path}.Do", f"step type {type_name!r} takes no Do")
    if entry.container and not src.children:
        raise DefinitionLoadError(
            src.path, f"step type {type_name!r} is a block: give its steps in Do"
        )
    step = WorkflowStep(
        id=src.index,
        body=factory,
        body_name=body_name,
        name=doc.get("Name"),
        external_id=doc.get("Id"),
        children=list(src.children),
        child_values=[None] * len(src.children),
        is_container=entry.container,
        is_saga=bool(doc.get("Saga", False)),
        is_compensation=src.is_compensation,
        compensation_step_id=src.compensation,
        proceed_after_cancel=bool(doc.get("ProceedOnCancel", False)),
        run_in_thread=thread,
    )
    for item in src.inputs:
        attr = _input_attribute(entry, item.name, item.path)
        fn = _input_fn(item.value, attr in entry.durations, item.path)
        step.inputs = [i for i in step.inputs if i[0] != attr]
        step.inputs.append((attr, fn, 2))
    for target, expr in src.outputs:
        step.outputs.append((None, _output_fn(target, expr)))
    if src.cancel is not None:
        step.cancel_condition = _cancel_fn(src.cancel)
    step.error_behavior = _behavior(doc.get("ErrorBehavior"))
    if "RetryInterval" in doc:
        step.retry_interval = _interval(doc["RetryInterval"], f"{src.path}.RetryInterval")
        if step.error_behavior is None:
            step.error_behavior = ErrorBehavior.RETRY
    if src.next_step is not None:
        step.outcomes.append(Outcome(src.next_step))
    if src.selects:
        selectors = [(key, _selector(expr)) for key, expr in src.selects]
        inner, in_thread = factory, thread
        step.body = lambda: SelectingBody(inner(), selectors, in_thread)
        step.run_in_thread = False
        for (key, _expr), index in zip(src.selects, src.select_targets, strict=True):
            step.outcomes.append(SelectOutcome(index, select_id=key))
    return step


def build_definition(
    parsed: ParsedDefinition, registry: DefinitionRegistry | None = None
) -> WorkflowDefinition:
    """The definition of a parsed document, with types from ``registry`` (a registry
    of the built-ins only when None); :class:`DefinitionLoadError` naming the path of
    an unknown type or input."""
    registry = registry if registry is not None else DefinitionRegistry()
    data_type = None
    if parsed.data_type_name is not None:
        data_type = registry.find_data(parsed.data_type_name)
        if data_type is None:
            raise DefinitionLoadError(
                "DataType",
                f"unknown data type {parsed.data_type_name!r}: register it with "
                f"registry.data({parsed.data_type_name!r}, YourData) (registered: "
                f"{', '.join(registry.data_names())})",
            )
    steps = [_make_step(src, registry) for src in parsed.steps]
    default = _behavior(parsed.document.get("DefaultErrorBehavior"))
    interval = None
    if "DefaultErrorRetryInterval" in parsed.document:
        interval = _interval(
            parsed.document["DefaultErrorRetryInterval"], "DefaultErrorRetryInterval"
        )
        default = default or ErrorBehavior.RETRY
    if default is not None:
        for step in steps:
            if step.error_behavior is None:
                step.error_behavior = default
                step.retry_interval = interval
    return WorkflowDefinition(
        parsed.definition_id, parsed.version, data_type, steps, parsed.description
    )


def load_definition(
    text: str | bytes, format: str = "json", registry: DefinitionRegistry | None = None
) -> WorkflowDefinition:
    """Parse, check and build a document in one go (not registered anywhere: see
    ``WorkflowHost.load_definition`` / ``WorkflowClient.register_definition``)."""
    return build_definition(parse_definition(text, format), registry)
