"""End-to-end engine scenarios run through :class:`~wfe_core.WorkflowHost` on the
provider under test: :class:`HostScenarioTests`.

One module per feature, each holding the workflows its tests use right next to those
tests, as a mixin class; :class:`HostScenarioTests` combines them all. Shared pieces
(the host factory, the recorder, the data types, tiny steps and the fixtures of
:class:`~wfe_conformance.scenarios.support.ScenarioBase`) are in
:mod:`wfe_conformance.scenarios.support`.

Each test builds its hosts with the ``host_factory`` fixture (fast poll and retry
intervals) -- ``await host_factory.run_to_end(workflow, data)`` for the common
start-and-wait -- and waits on conditions with bounded timeouts, never on fixed sleeps.
A provider whose hosts need their own lock or queue provider overrides
``host_builder``.
"""

from __future__ import annotations

from wfe_conformance.scenarios.activities import ActivityScenarioTests
from wfe_conformance.scenarios.basics import BasicScenarioTests
from wfe_conformance.scenarios.compensation import CompensationScenarioTests
from wfe_conformance.scenarios.control import ControlScenarioTests
from wfe_conformance.scenarios.control_flow import ControlFlowScenarioTests
from wfe_conformance.scenarios.errors import ErrorScenarioTests
from wfe_conformance.scenarios.events import EventScenarioTests
from wfe_conformance.scenarios.lifecycle import LifecycleScenarioTests
from wfe_conformance.scenarios.middleware import MiddlewareScenarioTests
from wfe_conformance.scenarios.retry_policy import RetryPolicyScenarioTests
from wfe_conformance.scenarios.sagas import SagaScenarioTests
from wfe_conformance.scenarios.scheduling import SchedulingScenarioTests
from wfe_conformance.scenarios.stored_definitions import StoredDefinitionScenarioTests
from wfe_conformance.scenarios.sub_workflows import SubWorkflowScenarioTests
from wfe_conformance.scenarios.support import ScenarioBase
from wfe_conformance.scenarios.timeouts import TimeoutScenarioTests
from wfe_conformance.scenarios.user_tasks import UserTaskScenarioTests
from wfe_conformance.scenarios.waits import WaitScenarioTests

__all__ = [
    "ActivityScenarioTests",
    "BasicScenarioTests",
    "CompensationScenarioTests",
    "ControlFlowScenarioTests",
    "ControlScenarioTests",
    "ErrorScenarioTests",
    "EventScenarioTests",
    "HostScenarioTests",
    "LifecycleScenarioTests",
    "MiddlewareScenarioTests",
    "RetryPolicyScenarioTests",
    "SagaScenarioTests",
    "ScenarioBase",
    "SchedulingScenarioTests",
    "StoredDefinitionScenarioTests",
    "SubWorkflowScenarioTests",
    "TimeoutScenarioTests",
    "UserTaskScenarioTests",
    "WaitScenarioTests",
]


class HostScenarioTests(
    BasicScenarioTests,
    ControlFlowScenarioTests,
    SchedulingScenarioTests,
    EventScenarioTests,
    WaitScenarioTests,
    ActivityScenarioTests,
    CompensationScenarioTests,
    SagaScenarioTests,
    MiddlewareScenarioTests,
    ErrorScenarioTests,
    ControlScenarioTests,
    SubWorkflowScenarioTests,
    LifecycleScenarioTests,
    RetryPolicyScenarioTests,
    TimeoutScenarioTests,
    UserTaskScenarioTests,
    StoredDefinitionScenarioTests,
):
    """Every engine scenario end to end through ``WorkflowHost`` on the provider (the
    composition of the feature mixins; override ``host_builder`` to wire the store's
    own lock and queue providers)."""
