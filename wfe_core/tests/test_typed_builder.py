"""The typed builder: ``mypy --strict`` accepts ``typed_example.py`` and names a
misspelt attribute in copies of it; the example builds at run time; the import graph
among the definition modules has no circle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from wfe_core.builder import WorkflowBuilder
from wfe_core.primitives import Recur, WaitFor

import wfe_core
from wfe_core import definition, workflow

HERE = Path(__file__).parent
EXAMPLE = HERE / "typed_example.py"

# (name, exact text in the example, its misspelt replacement, what mypy must name)
MUTANTS = [
    (
        "key",
        "key=lambda o: o.order_id",
        "key=lambda o: o.oder_id",
        '"Order" has no attribute "oder_id"',
    ),
    ("if", "if_(lambda o: o.payment is", "if_(lambda o: o.paymnt is", '"paymnt"'),
    ("foreach", "lambda o: o.lines, parallel", "lambda o: o.line, parallel", '"line"'),
    ("until", "until=lambda o: o.shipped", "until=lambda o: o.shiped", '"shiped"'),
    ("input", "amount=lambda o: o.amount", "amount=lambda o: o.amout", '"amout"'),
    ("output_wait", "step: step.event_data", "step: step.event_dta", '"WaitFor" has no attribute'),
    ("output_body", "step: step.receipt", "step: step.reciept", '"Charge" has no attribute'),
    ("decide", "decide(lambda o: o.shipped)", "decide(lambda o: o.shiped)", '"shiped"'),
]


@pytest.mark.slow
def test_mypy_strict_accepts_the_example_and_names_typos(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    source = EXAMPLE.read_text()
    files = [tmp_path / "typed_example.py"]
    shutil.copy(EXAMPLE, files[0])
    for name, good, bad, _ in MUTANTS:
        assert source.count(good) == 1, good
        mutant = tmp_path / f"typo_{name}.py"
        mutant.write_text(source.replace(good, bad))
        files.append(mutant)
    stdout, stderr, _status = api.run(
        [
            "--strict",
            "--config-file=",
            "--python-version=3.11",
            f"--cache-dir={tmp_path / '.mypy_cache'}",
            "--no-error-summary",
            *map(str, files),
        ]
    )
    assert not stderr, stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith(str(files[0]))], stdout
    for name, _, bad, message in MUTANTS:
        mine = [e for e in errors if e.startswith(str(tmp_path / f"typo_{name}.py"))]
        assert len(mine) == 1, (bad, stdout)
        assert message in mine[0], (bad, mine)
        assert "[attr-defined]" in mine[0], (bad, mine)


def test_the_example_builds_as_before() -> None:
    import typed_example

    builder: WorkflowBuilder[typed_example.Order] = WorkflowBuilder()
    typed_example.OrderWorkflow().build(builder)
    d = builder.build("typed-order", 1, typed_example.Order)
    assert typed_example.OrderWorkflow.data_type is typed_example.Order
    labels = [s.label for s in d.steps]
    assert labels[:3] == ["place", "wait_for(payment)", "Charge"]
    charge = d.steps[2]
    assert [(attr, nargs) for attr, _, nargs in charge.inputs] == [("amount", 1), ("label", 2)]
    assert any(s.body is Recur for s in d.steps)
    wait = d.steps[1]
    assert wait.body is WaitFor
    order = typed_example.Order("A-1")
    inputs = {attr: fn for attr, fn, _ in wait.inputs}
    assert inputs["event_key"](order) == "A-1"
    assert inputs["event_name"](order) == "payment"


def test_schedule_do_gives_back_the_builder_it_was_called_on() -> None:
    from datetime import timedelta

    wb: WorkflowBuilder[dict[str, int]] = WorkflowBuilder()
    first = wb.start_with(lambda context: None)
    back = first.schedule(timedelta(seconds=1)).do(lambda b: b.start_with(lambda c: None))
    assert back is first


def test_workflow_is_the_same_class_under_every_old_name() -> None:
    assert wfe_core.Workflow is workflow.Workflow is definition.Workflow
    from wfe_core.definition import Workflow

    assert Workflow is workflow.Workflow
