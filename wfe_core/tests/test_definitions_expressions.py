"""The expression language of definition documents: the C# compatibility rewrite on
tokens, the sandbox, helpers, output targets and durations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel
from wfe_core.definitions import DefinitionLoadError
from wfe_core.definitions.expressions import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    ContextView,
    ExpressionError,
    StepView,
    as_duration,
    compile_expression,
    compile_target,
    parse_timespan,
    rewrite,
)

NAMES = INPUT_NAMES | OUTPUT_NAMES


def ev(text: str, **names: Any) -> Any:
    """Compile and evaluate ``text`` with ``names``."""
    return compile_expression(text, "X", NAMES).evaluate(names)


@pytest.mark.parametrize(
    ("source", "python"),
    [
        ("!data.flag", "not data.flag"),
        ("!(a)", "not (a)"),
        ("a != b", "a != b"),
        ("a&&b", "a and b"),
        ("a || b", "a or b"),
        ("a & b", "a & b"),
        ("x == true", "x == True"),
        ("null", "None"),
        ("data.true", "data.true"),
        ('"a && !b || true"', '"a && !b || true"'),
    ],
)
def test_rewrite_works_on_tokens(source: str, python: str) -> None:
    """C# spellings become Python; strings and attribute names are left alone."""
    assert " ".join(rewrite(source).split()) == python


def test_csharp_style_expressions_evaluate() -> None:
    """Workflow Core's expressions give the values their C# forms give."""
    data = SimpleNamespace(Flag1=True, Flag3=False, Counter1=4)
    assert ev("!data.Flag3", data=data) is True
    assert ev("data.Flag1 && !data.Flag3", data=data) is True
    assert ev('"Event1"') == "Event1"
    assert ev("object.Equals(data.Flag1, true)", data=data) is True
    assert ev('object.Equals(data["f"], true)', data={"f": None}) is False
    assert ev("object.Equals(data.Counter1, 4)", data=data) is True
    assert ev('data["k"] + 1', data={"k": 1}) == 2
    assert ev("data.k", data={"k": 5}) == 5  # a dict's keys read as attributes too
    now = ev("DateTime.Now")
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert ev("DateTime.UtcNow - now() < TimeSpan.FromSeconds(5)") is True
    assert ev("TimeSpan.FromMinutes(2)") == timedelta(minutes=2)
    assert ev("timedelta(seconds=3)") == timedelta(seconds=3)
    assert ev("len([1, 2]) + max(1, 3)") == 5
    assert ev("f'{data[0]}-{data[1]}'", data=[1, 2]) == "1-2"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("data.__class__", "'__class__' is not allowed"),
        ("().__class__.__bases__", "'__bases__' is not allowed"),
        ("data._private", "'_private' is not allowed"),
        ("__import__('os')", "'__import__' is not a function you can call here"),
        ("x.__import__", "'__import__' is not allowed"),
        ("os.system('echo hacked')", "unknown name 'os'"),
        ("open('/etc/passwd')", "'open' is not a function you can call here"),
        ("eval('1')", "'eval' is not a function you can call here"),
        ("getattr(data, 'x')", "'getattr' is not a function you can call here"),
        ("open", "unknown name 'open'"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in data]", "a comprehension is not allowed"),
        ("(y := 1)", "an assignment (:=) is not allowed"),
        ("'{0.__class__}'.format(data)", "'format' is not allowed"),
        ("data.mro", "'mro' is not allowed"),
        ("f(**data)", "'f' is not a function you can call here"),
        ("str(**data)", "**keyword unpacking is not allowed"),
        ("import os", "is not a valid expression"),
        ("a = 1", "is not a valid expression"),
        ("data.a; data.b", "is not a valid expression"),
    ],
)
def test_the_sandbox_refuses_at_load_time(text: str, words: str) -> None:
    """Dunder and private names, imports, lambdas, comprehensions, unknown names and
    statements are load errors naming the path."""
    with pytest.raises(DefinitionLoadError) as refused:
        compile_expression(text, "Steps[0].Inputs.Value", NAMES)
    assert str(refused.value).startswith("Steps[0].Inputs.Value: ")
    assert words in str(refused.value)


def test_the_sandbox_holds_at_run_time() -> None:
    """What data holds cannot be used to escape: methods that are not allowed, modules
    and forbidden functions are refused when evaluated."""
    import os

    with pytest.raises(ExpressionError, match=r"X: 'data\.m' failed"):
        ev("data.m", data=SimpleNamespace(m=os))
    with pytest.raises(ExpressionError, match="forbidden"):
        ev("data.f('x')", data=SimpleNamespace(f=eval))
    with pytest.raises(ExpressionError, match=r"AttributeDoesNotExist|KeyError"):
        ev("data.missing", data=SimpleNamespace())


def test_names_depend_on_the_place() -> None:
    """An input cannot read ``step``; an output cannot read ``context``."""
    with pytest.raises(DefinitionLoadError, match="unknown name 'step'"):
        compile_expression("step.value", "p", INPUT_NAMES)
    with pytest.raises(DefinitionLoadError, match="unknown name 'context'"):
        compile_expression("context.item", "p", OUTPUT_NAMES)
    with pytest.raises(DefinitionLoadError, match="the expression is empty"):
        compile_expression("  ", "p", INPUT_NAMES)
    with pytest.raises(DefinitionLoadError, match="must be a string"):
        compile_expression(3, "p", INPUT_NAMES)


class _Body:
    value = 3
    event_data = "e"

    def run(self) -> None:  # a method: not a value
        pass


def test_step_and_context_views() -> None:
    """``step.Value`` finds ``value``; methods are not values; ``context`` shows the
    item and the workflow, never the host."""
    view = StepView(_Body())
    assert ev("step.Value + 1", step=view) == 4
    assert ev("step.EventData", step=view) == "e"
    with pytest.raises(ExpressionError, match=r"'step\.run' failed"):
        ev("step.run", step=view)
    workflow = SimpleNamespace(id="w1", reference="r", version=2, workflow_definition_id="d")
    context = SimpleNamespace(
        item=7, workflow=workflow, step=SimpleNamespace(id=3, label="s"), host=object()
    )
    cv = ContextView(context)
    assert ev("context.Item * 2", context=cv) == 14
    assert ev("context.Workflow.Id + context.workflow.definition_id", context=cv) == "w1d"
    with pytest.raises(ExpressionError):
        ev("context.host", context=cv)


class Model(BaseModel):
    """A pydantic model as data."""

    total: int = 0
    inner: dict[str, Any] = {}


@dataclass
class Data:
    """A dataclass as data, holding the other kinds."""

    total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    model: Model = field(default_factory=Model)
    plain: Any = field(default_factory=SimpleNamespace)
    nothing: Any = None


def test_output_targets_assign_paths() -> None:
    """Targets set attributes, ``[key]`` items, on dataclasses, pydantic models, plain
    objects and dicts."""
    data = Data()
    compile_target("total", "p").assign(data, 1)
    compile_target('extra["test"]', "p").assign(data, 2)
    compile_target("extra.dotted", "p").assign(data, 3)  # a dict takes .name as a key
    compile_target("model.total", "p").assign(data, 4)
    compile_target('model.inner["k"]', "p").assign(data, 5)
    compile_target("plain.x", "p").assign(data, 6)
    assert (data.total, data.extra, data.model.total, data.model.inner, data.plain.x) == (
        1,
        {"test": 2, "dotted": 3},
        4,
        {"k": 5},
        6,
    )
    as_dict: dict[str, Any] = {}
    compile_target("Counter1", "p").assign(as_dict, 9)
    assert as_dict == {"Counter1": 9}
    with pytest.raises(ExpressionError, match=r"p: cannot set 'nothing\.x'"):
        compile_target("nothing.x", "p").assign(data, 1)


@pytest.mark.parametrize("target", ["a + b", "f()", "a[b]", "a[0:1]", "_x", "a.__dict__", "a["])
def test_bad_output_targets_are_load_errors(target: str) -> None:
    """Only names, attributes and constant keys make a target."""
    with pytest.raises(DefinitionLoadError, match=r"Steps\[0\]\.Outputs"):
        compile_target(target, "Steps[0].Outputs")


def test_durations() -> None:
    """TimeSpan strings and numbers of seconds are durations; others are refused."""
    assert parse_timespan("00:00:10") == timedelta(seconds=10)
    assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert parse_timespan("-00:01") == -timedelta(minutes=1)
    assert as_duration(1.5, "x") == timedelta(seconds=1.5)
    assert as_duration(None, "x") is None
    with pytest.raises(ValueError, match="period: 'soon' is not a duration"):
        as_duration("soon", "period")
    with pytest.raises(ValueError, match="expected a duration"):
        as_duration(True, "x")
