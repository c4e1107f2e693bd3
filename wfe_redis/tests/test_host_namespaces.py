"""Two namespaces on one SQLite file and one Redis (lock and queue under one key prefix):
hosts opened with ``WorkflowHost.from_url`` take their Redis services into their store's
namespace, so each host runs every workflow of its own namespace -- started, resumed by
an event with the same name and key in both -- and never takes the other's work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from wfe_core import HostOptions, Workflow, WorkflowHost, WorkflowStatus

pytestmark = pytest.mark.anyio

RUNS_PER_NAMESPACE = 6


class Approval(Workflow[dict[str, Any]]):
    """Note which namespace ran it, wait for "approved" with the order key, finish."""

    id = "approval"
    data_type = dict

    def build(self, builder: Any) -> None:
        builder.start_with(_mark).wait_for("approved", lambda data: data["order"]).then(_done)


def _mark(context: Any) -> None:
    context.workflow.data["ran_in"] = context.host.persistence.namespace


def _done(context: Any) -> None:
    context.workflow.data["done"] = True


async def test_hosts_of_two_namespaces_share_one_redis_without_crossing(
    tmp_path: Path, url: str, prefix: str
) -> None:
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    services = f"{url}?prefix={prefix}"
    options = HostOptions(poll_interval=0.2)
    hosts = {
        ns: WorkflowHost.from_url(
            f"{store}?namespace={ns}", lock_url=services, queue_url=services, options=options
        )
        for ns in ("team_a", "team_b")
    }
    for ns, host in hosts.items():
        host.register_workflow(Approval())
        assert host.lock_provider.namespace == ns  # type: ignore[attr-defined]
        assert host.queue_provider.namespace == ns  # type: ignore[attr-defined]
    started: dict[str, list[str]] = {}
    try:
        for host in hosts.values():
            await host.start()
        for ns, host in hosts.items():
            started[ns] = [
                await host.start_workflow("approval", {"order": f"o{i}"})
                for i in range(RUNS_PER_NAMESPACE)
            ]
        # the same event name and key in both namespaces: each resumes its own
        for host in hosts.values():
            for i in range(RUNS_PER_NAMESPACE):
                await host.publish_event("approved", f"o{i}", None)
        with anyio.fail_after(60):
            for ns, host in hosts.items():
                for workflow_id in started[ns]:
                    done = await host.wait_for_workflow(workflow_id, timeout=60)
                    assert done.status is WorkflowStatus.COMPLETE
                    assert done.data["ran_in"] == ns
                    assert done.data["done"] is True
        for ns, host in hosts.items():
            assert await host.count_workflows() == RUNS_PER_NAMESPACE
            other = started["team_b" if ns == "team_a" else "team_a"]
            found = await host.persistence.get_workflow_instances(other)
            assert list(found) == []
    finally:
        for host in hosts.values():
            await host.stop()
