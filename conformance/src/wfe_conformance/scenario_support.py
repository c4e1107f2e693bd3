"""Compatibility module: the helpers, data types and workflows of the host scenarios
now live in :mod:`wfe_conformance.scenarios` (one module per feature, helpers in
:mod:`wfe_conformance.scenarios.support`). Every name this module had is re-exported
here; new code imports from those modules.
"""

from __future__ import annotations

from wfe_conformance.scenarios.activities import (
    ACTIVITY,
    ActivityFailWorkflow,
    ActivityWorkflow,
)
from wfe_conformance.scenarios.basics import (
    BasicWorkflow,
    DataIOWorkflow,
    DecimalAdd,
    DecimalWorkflow,
    DictDataWorkflow,
    HelloStep,
)
from wfe_conformance.scenarios.compensation import (
    CompensationSequenceWorkflow,
    CompensationWorkflow,
    ForeachCompensationWorkflow,
)
from wfe_conformance.scenarios.control import (
    BlockingWorkflow,
    SlowStepWorkflow,
    TwoHostWorkflow,
)
from wfe_conformance.scenarios.control_flow import (
    AttachWorkflow,
    DecideWorkflow,
    EndWorkflowWorkflow,
    ForeachParallelWorkflow,
    ForeachSequentialWorkflow,
    ForkWorkflow,
    IfWorkflow,
    ReturnOutcome,
    SubtractNumbers,
    WhenWorkflow,
    WhileWorkflow,
)
from wfe_conformance.scenarios.errors import (
    FlakyWorkflow,
)
from wfe_conformance.scenarios.events import (
    ORDER_EVENT,
    EventOrderWorkflow,
    EventWorkflow,
    TypedEventWorkflow,
    WaitEffectiveDateWorkflow,
    WaitEventWorkflow,
    append_last,
)
from wfe_conformance.scenarios.middleware import (
    MiddlewareWorkflow,
)
from wfe_conformance.scenarios.sagas import (
    FailingSagaWorkflow,
    MultiStepCompensationWorkflow,
    NestedSagaCompensationWorkflow,
    RetrySagaWorkflow,
    SagaRetryLimitWorkflow,
    SagaWorkflow,
)
from wfe_conformance.scenarios.scheduling import (
    DelayWorkflow,
    RecurWorkflow,
    ScheduleWorkflow,
)
from wfe_conformance.scenarios.sub_workflows import (
    ChildFailWorkflow,
    ChildWaitWorkflow,
    ChildWorkflow,
    ParentFailWorkflow,
    ParentWaitWorkflow,
    ParentWorkflow,
    double_value,
)
from wfe_conformance.scenarios.support import (
    EVENT_1,
    EVENT_2,
    EVENT_3,
    SCENARIO_TYPES,
    ActivityInput,
    ActivityOutput,
    AddNumbers,
    ChildData,
    Data,
    DecimalData,
    HostBuilder,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    far_future,
    increment,
    noop,
    subscriptions_for,
    wait_for_subscription,
    wait_until,
)
from wfe_conformance.scenarios.waits import (
    CancelledEventWorkflow,
    EndWithOpenWaitWorkflow,
    ParallelEventsWorkflow,
    ParallelWorkflow,
    WaitTimeoutWorkflow,
)

__all__ = [
    "ACTIVITY",
    "EVENT_1",
    "EVENT_2",
    "EVENT_3",
    "ORDER_EVENT",
    "SCENARIO_TYPES",
    "ActivityFailWorkflow",
    "ActivityInput",
    "ActivityOutput",
    "ActivityWorkflow",
    "AddNumbers",
    "AttachWorkflow",
    "BasicWorkflow",
    "BlockingWorkflow",
    "CancelledEventWorkflow",
    "ChildData",
    "ChildFailWorkflow",
    "ChildWaitWorkflow",
    "ChildWorkflow",
    "CompensationSequenceWorkflow",
    "CompensationWorkflow",
    "Data",
    "DataIOWorkflow",
    "DecideWorkflow",
    "DecimalAdd",
    "DecimalData",
    "DecimalWorkflow",
    "DelayWorkflow",
    "DictDataWorkflow",
    "EndWithOpenWaitWorkflow",
    "EndWorkflowWorkflow",
    "EventOrderWorkflow",
    "EventWorkflow",
    "FailingSagaWorkflow",
    "FlakyWorkflow",
    "ForeachCompensationWorkflow",
    "ForeachParallelWorkflow",
    "ForeachSequentialWorkflow",
    "ForkWorkflow",
    "HelloStep",
    "HostBuilder",
    "HostFactory",
    "IfWorkflow",
    "MiddlewareWorkflow",
    "MultiStepCompensationWorkflow",
    "NestedSagaCompensationWorkflow",
    "ParallelEventsWorkflow",
    "ParallelWorkflow",
    "ParentFailWorkflow",
    "ParentWaitWorkflow",
    "ParentWorkflow",
    "Recorder",
    "RecordingWorkflow",
    "RecurWorkflow",
    "RetrySagaWorkflow",
    "ReturnOutcome",
    "SagaRetryLimitWorkflow",
    "SagaWorkflow",
    "ScheduleWorkflow",
    "SlowStepWorkflow",
    "SubtractNumbers",
    "TwoHostWorkflow",
    "TypedEventWorkflow",
    "WaitEffectiveDateWorkflow",
    "WaitEventWorkflow",
    "WaitTimeoutWorkflow",
    "WhenWorkflow",
    "WhileWorkflow",
    "append_last",
    "double_value",
    "far_future",
    "increment",
    "noop",
    "subscriptions_for",
    "wait_for_subscription",
    "wait_until",
]
