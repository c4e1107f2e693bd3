"""Basics and data flow: steps run once, inputs and outputs map data, typed and dict data
survive the store, and starting or registering wrongly is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.support import (
    AddNumbers,
    Data,
    DecimalData,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
)
from wfe_core import (
    DefinitionError,
    ExecutionResult,
    StepBody,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowNotRegistered,
    WorkflowStatus,
)

__all__ = [
    "BasicScenarioTests",
    "BasicWorkflow",
    "DataIOWorkflow",
    "DecimalWorkflow",
    "DictDataWorkflow",
]


class HelloStep(StepBody):
    """A synchronous step body: appends "hello" to the data."""

    def run(self, context: StepContext[Any]) -> ExecutionResult:  # type: ignore[override]
        context.data.received.append("hello")
        return ExecutionResult.next()


class BasicWorkflow(RecordingWorkflow):
    """A sync StepBody, then a plain async function."""

    id = "scn-basic"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def world(context: StepContext[Any]) -> None:
            rec.hit("world")
            context.data.received.append("world")

        builder.start_with(HelloStep).name("hello").then(world).name("world")


class DataIOWorkflow(Workflow[Data]):
    """Inputs map data to a step, outputs map the step's result back (2 + 3 = 5)."""

    id = "scn-data-io"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(AddNumbers).input(a=lambda d: d.a, b=lambda d: d.b).output(
            total=lambda s: s.total
        )


class DecimalAdd(StepBody):
    """total = a + b on decimals (inputs a, b; output total)."""

    a: Decimal = Decimal("0")
    b: Decimal = Decimal("0")
    total: Decimal = Decimal("0")

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a + self.b
        return ExecutionResult.next()


class DecimalWorkflow(Workflow[DecimalData]):
    """Decimal inputs and outputs with 18 places."""

    id = "scn-decimal"
    version = 1
    data_type = DecimalData

    def build(self, builder: WorkflowBuilder[DecimalData]) -> None:
        builder.start_with(DecimalAdd).input(a=lambda d: d.a, b=lambda d: d.b).output(
            total=lambda s: s.total
        )


class DictDataWorkflow(Workflow[dict[str, Any]]):
    """Dynamic data: a dict; the output writes a new key."""

    id = "scn-dict-data"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        builder.start_with(AddNumbers).input(a=lambda d: d["a"], b=lambda d: d["b"]).output(
            total=lambda s: s.total
        )


class BasicScenarioTests(ScenarioBase):
    """Steps, data mapping and typed data end to end; start and register errors."""

    async def test_basic_two_steps_run_once_each(self, host_factory: HostFactory) -> None:
        """A sync StepBody then an async function each run exactly once; COMPLETE."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(BasicWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.complete_time is not None
        assert inst.data.received == ["hello", "world"]
        assert rec.count("world") == 1

    async def test_run_workflow_returns_final_instance(self, host_factory: HostFactory) -> None:
        """run_workflow starts a workflow and returns its finished instance."""
        host = await host_factory(DataIOWorkflow())
        inst = await host.run_workflow(DataIOWorkflow.id, Data(a=4, b=5), timeout=self.timeout)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 9

    async def test_start_without_data_builds_default_data(self, host_factory: HostFactory) -> None:
        """start_workflow with data=None starts with data_type()."""
        _, inst = await host_factory.run_to_end(DataIOWorkflow())
        assert isinstance(inst.data, Data)
        assert inst.data.total == 0

    async def test_input_output_mapping(self, host_factory: HostFactory) -> None:
        """Inputs map data into the step and outputs map its result back (2 + 3 = 5)."""
        _, inst = await host_factory.run_to_end(DataIOWorkflow(), Data(a=2, b=3))
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 5

    async def test_decimal_with_18_places_survives_step_and_store(
        self, host_factory: HostFactory
    ) -> None:
        """An 18-place Decimal passes input -> step -> output and is stored typed."""
        a = Decimal("0.123456789012345678")
        b = Decimal("1.000000000000000001")
        when = datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
        _, inst = await host_factory.run_to_end(DecimalWorkflow(), DecimalData(a=a, b=b, when=when))
        assert inst.status == WorkflowStatus.COMPLETE
        assert isinstance(inst.data, DecimalData)
        assert isinstance(inst.data.total, Decimal)
        assert str(inst.data.total) == "1.123456789012345679"
        # a second host reads the instance back from the store
        other = await host_factory(DecimalWorkflow())
        stored = await other.get_workflow_instance(inst.id)
        assert isinstance(stored.data, DecimalData)
        assert stored.data == DecimalData(a=a, b=b, total=a + b, when=when)
        assert str(stored.data.a) == "0.123456789012345678"

    async def test_dict_data_output_sets_key(self, host_factory: HostFactory) -> None:
        """With dict data, inputs read keys and an output writes a new key."""
        _, inst = await host_factory.run_to_end(DictDataWorkflow(), {"a": 2, "b": 3})
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data == {"a": 2, "b": 3, "total": 5}

    async def test_start_unknown_definition_raises(self, host_factory: HostFactory) -> None:
        """Starting an unregistered definition raises WorkflowNotRegistered."""
        host = await host_factory()
        with pytest.raises(WorkflowNotRegistered):
            await host.start_workflow("scn-no-such-workflow", Data())

    async def test_start_with_wrong_data_type_raises_and_stores_nothing(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Data of another type than data_type raises TypeError and stores nothing."""
        host = await host_factory(DataIOWorkflow())
        with pytest.raises(TypeError):
            await host.start_workflow(DataIOWorkflow.id, DecimalData())
        assert await provider.query_workflows(definition_id=DataIOWorkflow.id) == []

    async def test_register_same_definition_twice_raises(self, host_factory: HostFactory) -> None:
        """Registering the same id and version twice raises DefinitionError."""
        host = await host_factory(DataIOWorkflow())
        with pytest.raises(DefinitionError):
            host.register_workflow(DataIOWorkflow())
