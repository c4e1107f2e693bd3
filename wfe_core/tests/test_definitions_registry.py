"""Step and data types resolve through the application's registry only: a document
never gets anything imported by the name it gives."""

from __future__ import annotations

import json
import sys

import pytest
from definitions_support import Add, Board, doc, registry
from wfe_core.definitions import DefinitionLoadError, DefinitionRegistry, load_definition
from wfe_core.errors import DefinitionError

from wfe_core import primitives as prim


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "os:system",
        "builtins.eval",
        "subprocess.Popen",
        "wfe_core.primitives.If",
        "definitions_support.Add",
        "definitions_support:Add",
        "WorkflowCore.TestAssets.Steps.Counter, WorkflowCore.TestAssets",
    ],
)
def test_unregistered_names_are_never_imported(name: str) -> None:
    """A StepType that is not registered fails with its path, whatever it looks like,
    and imports nothing."""
    load_definition(doc([{"StepType": "Add"}]), "json", registry())  # the loader's own imports
    before = set(sys.modules)
    with pytest.raises(DefinitionLoadError) as refused:
        load_definition(doc([{"StepType": name}]), "json", registry())
    assert str(refused.value).startswith(f"Steps[0].StepType: unknown step type {name!r}")
    assert "nothing is ever imported" in str(refused.value)
    assert set(sys.modules) == before


def test_builtins_answer_to_short_and_workflow_core_names() -> None:
    """Built-in primitives resolve by short name and by Workflow Core's full names."""
    reg = DefinitionRegistry()
    for name in (
        "WaitFor",
        "WorkflowCore.Primitives.WaitFor",
        "WorkflowCore.Primitives.WaitFor, WorkflowCore",
    ):
        found = reg.find_step(name)
        assert found is not None
        assert found.target is prim.WaitFor
    for short, body in (("ForEach", prim.Foreach), ("Parallel", prim.Sequence)):
        found = reg.find_step(short)
        assert found is not None
        assert found.target is body
    assert reg.find_data("dict") is dict
    assert "If" in reg.step_names()


def test_aliases_map_dotnet_names() -> None:
    """An application maps Workflow Core's .NET type names with aliases."""
    reg = DefinitionRegistry().step(
        "Add", Add, aliases=["WorkflowCore.TestAssets.Steps.Counter, WorkflowCore.TestAssets"]
    )
    reg.data("Board", Board, aliases=["Assets.Board, Assets"])
    text = json.dumps(
        {
            "Id": "x",
            "Version": 1,
            "DataType": "Assets.Board, Assets",
            "Steps": [
                {"StepType": "WorkflowCore.TestAssets.Steps.Counter, WorkflowCore.TestAssets"}
            ],
        }
    )
    definition = load_definition(text, "json", reg)
    assert definition.data_type is Board
    assert definition.steps[0].body_name == "Add"
    assert reg.data_types() == [dict, Board]


def test_registering_is_checked() -> None:
    """A name taken by another step or type, or something that is not a step or a
    class, is refused; registering the same thing again is fine."""
    reg = DefinitionRegistry().step("Add", Add)
    reg.step("Add", Add)
    with pytest.raises(DefinitionError, match="already registered"):
        reg.step("Add", prim.Delay)
    with pytest.raises(DefinitionError, match="already registered"):
        reg.step("If", Add)
    with pytest.raises(DefinitionError, match="not a step"):
        reg.step("X", 42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="not an instance"):
        reg.step("Y", Add())  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="takes a class"):
        reg.data("B", Board())  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="non-empty string"):
        reg.step("", Add)
    reg.data("B", Board)
    with pytest.raises(DefinitionError, match="already registered"):
        reg.data("B", dict)


def test_without_a_registry_only_builtins_resolve() -> None:
    """load_definition without a registry knows the primitives only."""
    text = json.dumps({"Id": "x", "Version": 1, "Steps": [{"StepType": "EndWorkflow"}]})
    assert load_definition(text).steps[0].body is prim.EndWorkflow
    with pytest.raises(DefinitionLoadError, match="unknown step type 'Add'"):
        load_definition(doc([{"StepType": "Add"}], DataType="dict"))
