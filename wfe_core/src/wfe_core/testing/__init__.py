"""Testing users' workflows: a virtual clock and a test host.

``WorkflowTestEnv`` runs a :class:`~wfe_core.host.WorkflowHost` (memory store by
default, any store URL by option) under a :class:`VirtualClock`, so delays, schedules,
timeouts and ``wait_for`` timeouts of days run in milliseconds::

    async with WorkflowTestEnv() as env:
        handle = await env.start(OrderWorkflow(), OrderData("A-1"))
        await env.advance(timedelta(days=3))      # fires what is due on the way
        instance = await env.wait_for_workflow(handle)   # skips time when idle
        await env.assert_steps(handle, ["place", "wait_for(payment)", "cancel"])

The pytest plugin (:mod:`wfe_core.testing.plugin`, registered through the
``pytest11`` entry point) gives the ``wfe_env`` fixture. Nothing in the engine imports
this package.
"""

from wfe_core.testing.clock import VirtualClock
from wfe_core.testing.env import TEST_HOST_OPTIONS, DueSource, StepRecord, WorkflowTestEnv

__all__ = ["TEST_HOST_OPTIONS", "DueSource", "StepRecord", "VirtualClock", "WorkflowTestEnv"]
