"""Loading definition documents: schema errors name their path, references and types
are checked, JSON and YAML give the same definition."""

from __future__ import annotations

import json

import pytest
from definitions_support import doc, registry
from wfe_core.definitions import DefinitionLoadError, load_definition, parse_definition
from wfe_core.definitions.document import definition_schema, format_path, guess_format
from wfe_core.definitions.registry import DefinitionRegistry


def _error(text: str | bytes, fmt: str = "json", reg: DefinitionRegistry | None = None) -> str:
    with pytest.raises(DefinitionLoadError) as caught:
        load_definition(text, fmt, reg if reg is not None else registry())
    return str(caught.value)


ADD = {"Id": "s1", "StepType": "Add", "Inputs": {"Value": "data.a"}, "Outputs": {"a": "step.value"}}


def test_a_valid_document_builds_numbered_steps() -> None:
    """Steps are numbered depth first; NextStepId and Do become edges and children."""
    text = doc(
        [
            {**ADD, "NextStepId": "if"},
            {
                "Id": "if",
                "StepType": "If",
                "Inputs": {"Condition": "data.flag"},
                "Do": [[{"Id": "in", "StepType": "Note", "Inputs": {"Text": '"x"'}}]],
                "NextStepId": "end",
            },
            {"Id": "end", "StepType": "Note"},
        ]
    )
    definition = load_definition(text, "json", registry())
    assert [s.external_id for s in definition.steps] == ["s1", "if", "in", "end"]
    assert [o.next_step for o in definition.steps[0].outcomes] == [1]
    assert definition.steps[1].children == [2]
    assert [o.next_step for o in definition.steps[1].outcomes] == [3]
    assert definition.steps[2].outcomes == []  # no NextStepId: the branch ends
    assert definition.data_type is not None
    assert definition.data_type.__name__ == "Board"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d.pop("Id"), "(document)", "'Id' is a required property"),
        (lambda d: d.update(Version="1"), "Version", "is not of type 'integer'"),
        (lambda d: d.update(Version=0), "Version", "less than the minimum"),
        (lambda d: d.update(Steps=[]), "Steps", "should be non-empty"),
        (lambda d: d["Steps"][1].update(Inputs=[1]), "Steps[1].Inputs", "not of type 'object'"),
        (lambda d: d["Steps"][1].update(NextStep="x"), "Steps[1]", "NextStep"),
        (lambda d: d["Steps"][0].pop("StepType"), "Steps[0]", "'StepType' is a required"),
        (lambda d: d["Steps"][0].update(ErrorBehavior="Explode"), "Steps[0].ErrorBehavior", ""),
        (lambda d: d["Steps"][0].update(RetryInterval="soon"), "Steps[0].RetryInterval", ""),
        (
            lambda d: d["Steps"][1]["Do"][0][0].update(Saga="yes"),
            "Steps[1].Do[0][0].Saga",
            "not of type 'boolean'",
        ),
    ],
)
def test_schema_errors_name_the_path(change: object, path: str, words: str) -> None:
    """A document that does not validate is refused naming the path of the problem."""
    document = json.loads(
        doc(
            [
                ADD,
                {
                    "Id": "p",
                    "StepType": "Sequence",
                    "Do": [[{"Id": "x", "StepType": "Note"}]],
                },
            ]
        )
    )
    change(document)  # type: ignore[operator]
    message = _error(json.dumps(document))
    assert message.startswith(f"{path}: "), message
    assert words in message


def test_expression_errors_name_the_deep_path() -> None:
    """A bad expression deep in Do branches is a load error at its path."""
    text = doc(
        [
            ADD,
            {"Id": "n", "StepType": "Note"},
            {
                "Id": "p",
                "StepType": "Parallel",
                "Do": [
                    [
                        {"Id": "x", "StepType": "Note", "NextStepId": "y"},
                        {"Id": "y", "StepType": "Add", "Inputs": {"Value": "data.a +"}},
                    ]
                ],
            },
        ]
    )
    message = _error(text)
    assert message.startswith("Steps[2].Do[0][1].Inputs.Value: 'data.a +' is not a valid"), message
    # also without a registry: parse_definition checks expressions
    with pytest.raises(DefinitionLoadError, match=r"Steps\[2\]\.Do\[0\]\[1\]\.Inputs\.Value"):
        parse_definition(text)


def test_missing_input_property_is_refused() -> None:
    """An input the step type does not have (Workflow Core's missing-input asset) is a
    load error naming the input and listing the step's inputs."""
    text = doc([{**ADD, "Inputs": {"Value1": "data.a"}}])
    message = _error(text)
    assert message.startswith("Steps[0].Inputs.Value1: step type 'Add' has no input 'Value1'")
    assert "amount, value" in message


def test_references_are_checked() -> None:
    """An unknown NextStepId or SelectNextStep id and a duplicate Id are load errors."""
    assert _error(doc([{**ADD, "NextStepId": "nope"}])).startswith(
        "Steps[0].NextStepId: no step has Id 'nope'"
    )
    select = {"Id": "d", "StepType": "Decide", "SelectNextStep": {"ghost": "True"}}
    assert _error(doc([select])).startswith("Steps[0].SelectNextStep.ghost: no step has Id")
    message = _error(doc([ADD, {**ADD}]))
    assert message.startswith("Steps[1].Id: step id 's1' is already used by Steps[0]")


def test_blocks_need_do_and_steps_refuse_it() -> None:
    """A block without Do, or Do on a step that is not a block, is a load error."""
    assert _error(doc([{"Id": "i", "StepType": "If"}])).startswith("Steps[0]: step type 'If'")
    message = _error(doc([{**ADD, "Do": [[{"StepType": "Note"}]]}]))
    assert message.startswith("Steps[0].Do: step type 'Add' takes no Do")


def test_function_steps_take_no_inputs() -> None:
    """A function registered as a step has no attributes to set."""
    message = _error(doc([{"StepType": "Collect", "Inputs": {"X": "1"}}]))
    assert message.startswith("Steps[0].Inputs.X: step type 'Collect' is a function")


def test_unknown_data_type_is_refused() -> None:
    """DataType resolves through the registry only."""
    message = _error(doc([ADD], DataType="myapp.models.Board"))
    assert message.startswith("DataType: unknown data type 'myapp.models.Board'")


def test_not_json_or_yaml_is_a_clear_error() -> None:
    """Syntax errors say where; a document that is not an object is refused."""
    assert "not valid JSON at line 1" in _error('{"Id": ')
    assert "not valid YAML at line 2" in _error("Id: x\n  - : [", "yaml")
    assert _error("[1, 2]").startswith("(document): a definition is an object")
    with pytest.raises(ValueError, match="format must be one of"):
        parse_definition("{}", "xml")


def test_yaml_and_json_with_bom_give_the_same_definition() -> None:
    """A byte order mark is ignored; YAML and JSON of one document build the same steps."""
    import yaml

    document = json.loads(doc([{**ADD, "NextStepId": "n"}, {"Id": "n", "StepType": "Note"}]))
    from_json = load_definition(b"\xef\xbb\xbf" + json.dumps(document).encode(), "json", registry())
    from_yaml = load_definition("\ufeff" + yaml.safe_dump(document), "yaml", registry())
    shape = [
        (s.external_id, s.body_name, [o.next_step for o in s.outcomes]) for s in from_json.steps
    ]
    assert shape == [
        (s.external_id, s.body_name, [o.next_step for o in s.outcomes]) for s in from_yaml.steps
    ]


def test_yaml_is_read_safely() -> None:
    """YAML tags that would build Python objects are refused (yaml.safe_load only)."""
    text = "Id: !!python/object/apply:os.system ['echo hacked']\nVersion: 1\nSteps: []\n"
    assert "not valid YAML" in _error(text, "yaml")


def test_paths_formats_and_schema_file() -> None:
    """Paths print like the document; formats come from extensions; the schema ships."""
    assert format_path(["Steps", 2, "Do", 0, 1, "Inputs", "Value"]) == (
        "Steps[2].Do[0][1].Inputs.Value"
    )
    assert format_path(["Steps", 0, "Outputs", 'x["k"]']) == 'Steps[0].Outputs["x[\\"k\\"]"]'
    assert guess_format("flow.YML") == "yaml"
    assert guess_format("flow.json") == "json"
    with pytest.raises(ValueError, match="cannot tell the format"):
        guess_format("flow.txt")
    schema = definition_schema()
    assert schema["required"] == ["Id", "Version", "Steps"]
    assert "WaitFor" not in schema["$defs"]["step"]["properties"]  # types live in registries
