"""Definitions as data: Workflow Core's stored JSON and YAML scenarios
(``StoredJsonScenario``, ``StoredYamlScenario``) ported with documents of our own in the
same DSL shape -- an ``If`` with three parallel ``Do`` branches, ``WaitFor`` steps with a
``CancelCondition`` (one with ``ProceedOnCancel``), a ``Decide`` with
``SelectNextStep``, dynamic data read with ``["key"]`` -- plus the version rule: an
instance keeps running on the stored version it started with.

The documents are stored through ``register_definition`` when the provider keeps
definitions (:class:`~wfe_core.definitions.DefinitionRepository`), else registered on
the host only (``load_definition``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wfe_core.definitions import DefinitionRegistry, supports_definitions

from wfe_conformance.scenarios.support import HostFactory, ScenarioBase, uid, wait_until
from wfe_core import ExecutionResult, StepBody, StepContext, WorkflowHost, WorkflowStatus

__all__ = [
    "COUNTER_JSON",
    "COUNTER_YAML",
    "DYNAMIC_JSON",
    "CountStep",
    "CounterBoard",
    "StoredDefinitionScenarioTests",
    "definition_registry",
]


@dataclass
class CounterBoard:
    """The data of the counter documents: ten counters and three flags."""

    counter1: int = 0
    counter2: int = 0
    counter3: int = 0
    counter4: int = 0
    counter5: int = 0
    counter6: int = 0
    counter7: int = 0
    counter8: int = 0
    counter9: int = 0
    counter10: int = 0
    flag1: bool = False
    flag2: bool = False
    flag3: bool = False


class CountStep(StepBody):
    """Adds one to its ``value`` input (the documents' ``Count`` step)."""

    value: int = 0

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        """Count."""
        self.value += 1
        return ExecutionResult.next()


def definition_registry() -> DefinitionRegistry:
    """The registry the documents name their types in."""
    return (
        DefinitionRegistry()
        .step("Count", CountStep, aliases=["Scenario.Steps.Count, Scenario"])
        .data("CounterBoard", CounterBoard)
    )


def _count(step_id: str, counter: str, next_id: str | None = None, data: str = "") -> str:
    source = f'data["{counter}"]' if data == "dict" else f"data.{counter}"
    nxt = f', "NextStepId": "{next_id}"' if next_id else ""
    return (
        f'{{"Id": "{step_id}", "StepType": "Count", "Inputs": {{"Value": {_q(source)}}}, '
        f'"Outputs": {{"{counter}": "step.value"}}{nxt}}}'
    )


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wait(step_id: str, next_id: str, cancel: str, proceed: bool) -> str:
    extra = ', "ProceedOnCancel": true' if proceed else ""
    return (
        f'{{"Id": "{step_id}", "StepType": "WorkflowCore.Primitives.WaitFor, WorkflowCore", '
        f'"NextStepId": "{next_id}", "CancelCondition": {_q(cancel)}{extra}, '
        '"Inputs": {"EventName": "\\"go\\"", "EventKey": "\\"k1\\"", '
        '"EffectiveDate": "DateTime.Now"}}'
    )


_RETRY = '"ErrorBehavior": "Retry", "Inputs"'


def _counter_json(dynamic: bool) -> str:
    kind = "dict" if dynamic else ""
    flag1 = 'object.Equals(data["flag1"], true)' if dynamic else "data.flag1"
    flag2 = 'object.Equals(data["flag2"], true)' if dynamic else "data.flag2"
    decide = (
        ""
        if dynamic
        else (
            ', {"Id": "pick", "StepType": "Decide", "SelectNextStep": '
            '{"yes": "data.flag3", "no": "!data.flag3"}}, '
            + _count("yes", "counter7", data=kind)
            + ", "
            + _count("no", "counter8", data=kind)
        )
    )
    last = _count("s4", "counter6", "pick" if not dynamic else None, kind)
    return f"""{{
  "Id": "{"stored-dynamic" if dynamic else "stored-json"}",
  "Version": 1,
  "Description": "counters, an If with three branches{"" if dynamic else ", a decision"}",
  "DataType": "{"dict" if dynamic else "CounterBoard"}",
  "Steps": [
    {_count("s1", "counter1", "s2", kind).replace('"Inputs"', _RETRY)},
    {_count("s2", "counter2", "s3", kind)},
    {{"Id": "s3", "StepType": "If", "NextStepId": "s4", "Inputs": {{"Condition": {_q(flag1)}}},
     "Do": [
       [{_count("b1.1", "counter3", "b1.2", kind)}, {_count("b1.2", "counter4", None, kind)}],
       [{_wait("b2.1", "b2.2", flag2, False)}, {_count("b2.2", "counter5", None, kind)}],
       [{_wait("b3.1", "b3.2", flag2, True)}, {_count("b3.2", "counter10", None, kind)}]
     ]}},
    {last}{decide}
  ]
}}"""


COUNTER_JSON = _counter_json(dynamic=False)
"""``StoredJsonScenario``'s document, our way: counters 1-4, 6 and 10 count with flags 1
and 2 set; counter 7 or 8 by flag 3."""

DYNAMIC_JSON = _counter_json(dynamic=True)
"""The dynamic-data variant: dict data read as ``data["counterN"]``."""

COUNTER_YAML = """\
Id: stored-yaml
Version: 1
DataType: CounterBoard
Steps:
- Id: s1
  StepType: Scenario.Steps.Count, Scenario
  ErrorBehavior: Retry
  Inputs: {Value: data.counter1}
  Outputs: {counter1: step.value}
  NextStepId: s2
- Id: s2
  StepType: Count
  Inputs: {Value: data.counter2}
  Outputs: {counter2: step.Value}
  NextStepId: s3
- Id: s3
  StepType: WorkflowCore.Primitives.If, WorkflowCore
  NextStepId: s4
  Inputs:
    Condition: data.flag1 && true
  Do:
  - - {Id: b1.1, StepType: Count, Inputs: {Value: data.counter3},
       Outputs: {counter3: step.value}, NextStepId: b1.2}
    - {Id: b1.2, StepType: Count, Inputs: {Value: data.counter4},
       Outputs: {counter4: step.value}}
  - - Id: b2.1
      StepType: WaitFor
      NextStepId: b2.2
      CancelCondition: data.flag2
      Inputs: {EventName: '"go"', EventKey: '"k1"', EffectiveDate: DateTime.Now}
    - {Id: b2.2, StepType: Count, Inputs: {Value: data.counter5},
       Outputs: {counter5: step.value}}
  - - Id: b3.1
      StepType: WaitFor
      NextStepId: b3.2
      CancelCondition: data.flag2 || false
      ProceedOnCancel: true
      Inputs: {EventName: '"go"', EventKey: '"k1"', EffectiveDate: DateTime.Now}
    - {Id: b3.2, StepType: Count, Inputs: {Value: data.counter10},
       Outputs: {counter10: step.value}}
- Id: s4
  StepType: Count
  Inputs: {Value: data.counter6}
  Outputs: {counter6: step.value}
"""
"""``StoredYamlScenario``'s document, our way (also names a step by an alias and uses
the ``&&`` / ``||`` spellings)."""


def _versioned(version: int, counter: str) -> str:
    return f"""{{
  "Id": "stored-versions", "Version": {version}, "DataType": "CounterBoard",
  "Steps": [
    {{"Id": "wait", "StepType": "WaitFor", "NextStepId": "count",
      "Inputs": {{"EventName": "\\"release\\"", "EventKey": "str(data.counter9)"}}}},
    {_count("count", counter)}
  ]
}}"""


class StoredDefinitionScenarioTests(ScenarioBase):
    """Workflow Core's stored-definition scenarios, run from JSON and YAML documents."""

    async def _sd_host(self, host_factory: HostFactory) -> WorkflowHost:
        host = await host_factory()
        host.definition_registry = definition_registry()
        return host

    async def _sd_register(self, host: WorkflowHost, text: str, format: str) -> None:
        if supports_definitions(host.persistence):
            await host.register_definition(text, format)
        else:
            host.load_definition(text, format)

    async def _sd_run(self, host: WorkflowHost, definition_id: str, data: Any) -> Any:
        workflow_id = await host.start_workflow(definition_id, data)
        done = await host.wait_for_workflow(workflow_id, timeout=self.timeout)
        assert done.status is WorkflowStatus.COMPLETE, done.status
        assert await host.get_errors(workflow_id) == []
        return done.data

    async def test_stored_json_branch_1(self, host_factory: HostFactory) -> None:
        """A JSON document runs: If branches, cancelled waits (one proceeding), and the
        decision taking its first branch."""
        host = await self._sd_host(host_factory)
        await self._sd_register(host, COUNTER_JSON, "json")
        data = await self._sd_run(
            host, "stored-json", CounterBoard(flag1=True, flag2=True, flag3=True)
        )
        counters = [getattr(data, f"counter{i}") for i in range(1, 11)]
        assert counters == [1, 1, 1, 1, 0, 1, 1, 0, 0, 1]

    async def test_stored_json_branch_2(self, host_factory: HostFactory) -> None:
        """The same JSON document with flag 3 off takes the decision's second branch."""
        host = await self._sd_host(host_factory)
        await self._sd_register(host, COUNTER_JSON, "json")
        data = await self._sd_run(
            host, "stored-json", CounterBoard(flag1=True, flag2=True, flag3=False)
        )
        counters = [getattr(data, f"counter{i}") for i in range(1, 11)]
        assert counters == [1, 1, 1, 1, 0, 1, 0, 1, 0, 1]

    async def test_stored_json_dynamic_data(self, host_factory: HostFactory) -> None:
        """A JSON document over dict data (``data["key"]`` reads, key outputs) runs."""
        host = await self._sd_host(host_factory)
        await self._sd_register(host, DYNAMIC_JSON, "json")
        start = {"flag1": True, "flag2": True} | {f"counter{i}": 0 for i in (1, 2, 3, 4, 5, 6, 10)}
        data = await self._sd_run(host, "stored-dynamic", start)
        assert {k: v for k, v in data.items() if k.startswith("counter")} == {
            "counter1": 1,
            "counter2": 1,
            "counter3": 1,
            "counter4": 1,
            "counter5": 0,
            "counter6": 1,
            "counter10": 1,
        }

    async def test_stored_yaml(self, host_factory: HostFactory) -> None:
        """A YAML document runs with the same results as Workflow Core's YAML scenario."""
        host = await self._sd_host(host_factory)
        await self._sd_register(host, COUNTER_YAML, "yaml")
        data = await self._sd_run(host, "stored-yaml", CounterBoard(flag1=True, flag2=True))
        counters = [getattr(data, f"counter{i}") for i in range(1, 11)]
        assert counters == [1, 1, 1, 1, 0, 1, 0, 0, 0, 1]

    async def test_an_instance_keeps_its_version(self, host_factory: HostFactory) -> None:
        """An instance started on version 1 finishes on version 1 after version 2 is
        registered; one started afterwards runs version 2."""
        host = await self._sd_host(host_factory)
        await self._sd_register(host, _versioned(1, "counter1"), "json")
        key = int(uid()[:6], 16)
        first = await host.start_workflow("stored-versions", CounterBoard(counter9=key))
        await self._sd_register(host, _versioned(2, "counter2"), "json")
        second = await host.start_workflow("stored-versions", CounterBoard(counter9=key))
        assert (await host.get_workflow_instance(first)).version == 1
        assert (await host.get_workflow_instance(second)).version == 2
        await wait_until(
            lambda: self._sd_both_waiting(host, first, second), self.timeout, "both wait"
        )
        await host.publish_event("release", str(key))
        one = await host.wait_for_workflow(first, timeout=self.timeout)
        two = await host.wait_for_workflow(second, timeout=self.timeout)
        assert (one.status, one.data.counter1, one.data.counter2) == (WorkflowStatus.COMPLETE, 1, 0)
        assert (two.status, two.data.counter1, two.data.counter2) == (WorkflowStatus.COMPLETE, 0, 1)

    @staticmethod
    async def _sd_both_waiting(host: WorkflowHost, *ids: str) -> bool:
        for workflow_id in ids:
            instance = await host.get_workflow_instance(workflow_id)
            if not any(p.event_name == "release" for p in instance.execution_pointers):
                return False
        return True
