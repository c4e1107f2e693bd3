"""Definitions on clients and hosts: register_definition stores and registers,
load_definition registers locally, hosts load stored definitions when they start and
reload a missing one from the store; the optional dependencies stay optional."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from definitions_support import FAST, TIMEOUT, Board, doc, fast_host, registry
from wfe_core.definitions import (
    DefinitionRegistry,
    DefinitionVersionConflict,
    StoredDefinition,
)
from wfe_core.errors import DefinitionError

from wfe_core import Workflow, WorkflowBuilder, WorkflowClient, WorkflowHost, WorkflowStatus
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CodeFlow(Workflow[Board]):
    """A workflow built in code, id ``code``."""

    id = "code"
    data_type = Board

    def build(self, builder: WorkflowBuilder[Board]) -> None:
        builder.start_with(lambda context: None)


ADD = {"StepType": "Add", "Inputs": {"Value": "data.a"}, "Outputs": {"a": "step.value"}}
V1 = doc([ADD])


async def test_register_definition_stores_and_registers() -> None:
    """The document is stored with its version and registered; the same text again is
    a no-op; another text for the version is refused and changes nothing."""
    async with fast_host() as host:
        made = await host.register_definition(V1)
        assert host.registry.find("t", 1) is made
        assert await host.register_definition(V1) is made
        stored = await host.persistence.get_definition("t", 1)  # type: ignore[attr-defined]
        assert (stored.format, stored.text) == ("json", V1)
        with pytest.raises(DefinitionVersionConflict, match="bump Version"):
            await host.register_definition(doc([ADD, ADD]))
        assert host.registry.find("t", 1) is made
        host.load_definition(doc([ADD]).replace('"Id": "t"', '"Id": "u"'))
        with pytest.raises(DefinitionVersionConflict):
            await host.register_definition(doc([ADD, ADD]).replace('"Id": "t"', '"Id": "u"'))
        assert [s.definition_id for s in await host.persistence.list_definitions()] == ["t"]  # type: ignore[attr-defined]
        done = await host.run_workflow("t", Board(a=1), timeout=TIMEOUT)
        assert (done.status, done.data.a) == (WorkflowStatus.COMPLETE, 2)


async def test_load_definition_stores_nothing() -> None:
    """load_definition registers on this host only; a different text for a registered
    version is refused."""
    async with fast_host() as host:
        host.load_definition(V1)
        assert await host.persistence.list_definitions() == []  # type: ignore[attr-defined]
        host.load_definition(V1)  # the same text again: fine
        with pytest.raises(DefinitionVersionConflict, match="bump Version"):
            host.load_definition(doc([ADD, ADD]))
        host.register_workflow(CodeFlow())
        with pytest.raises(DefinitionError, match="registered here by code"):
            host.load_definition(doc([ADD]).replace('"Id": "t"', '"Id": "code"'))


async def test_hosts_load_stored_definitions_when_they_start() -> None:
    """A host started on a store runs the definitions stored there by another process."""
    async with MemoryPersistenceProvider() as store:
        writer = WorkflowClient(store)
        writer.definition_registry = registry()
        async with writer:
            await writer.register_definition(V1, "json")
            workflow_id = await writer.start_workflow("t", Board(a=5))
        host = WorkflowHost(store, options=FAST)
        host.definition_registry = registry()
        async with host:
            assert host.registry.find("t", 1) is not None
            done = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert (done.status, done.data.a) == (WorkflowStatus.COMPLETE, 6)


async def test_a_running_host_reloads_a_definition_stored_after_it_started() -> None:
    """A host meeting an instance of a version stored after it started loads that
    version from the store and runs it."""
    async with MemoryPersistenceProvider() as store:
        host = WorkflowHost(store, options=FAST)
        host.definition_registry = registry()
        async with host:
            writer = WorkflowClient(store)
            writer.definition_registry = registry()
            async with writer:
                await writer.register_definition(V1)
                workflow_id = await writer.start_workflow("t", Board(a=1))
            done = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
            assert host.registry.find("t", 1) is not None
    assert (done.status, done.data.a) == (WorkflowStatus.COMPLETE, 2)


async def test_a_stored_definition_the_host_cannot_build_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stored document naming a type this application does not register is logged
    and skipped; the host starts and runs the rest."""
    unknown = doc([{"StepType": "Nope"}]).replace('"t"', '"other"')
    caplog.set_level(logging.WARNING, logger="wfe.host")
    async with MemoryPersistenceProvider() as store:
        await store.save_definition(StoredDefinition("other", 1, "json", unknown))
        await store.save_definition(StoredDefinition("t", 1, "json", V1))
        host = WorkflowHost(store, options=FAST)
        host.definition_registry = registry()
        async with host:
            assert host.registry.find("other", 1) is None
            assert host.registry.find("t", 1) is not None
            done = await host.run_workflow("t", Board(), timeout=TIMEOUT)
    assert done.status is WorkflowStatus.COMPLETE
    assert "stored definition other v1 was not loaded" in caplog.text
    assert "unknown step type 'Nope'" in caplog.text


async def test_namespaces_keep_definitions_apart() -> None:
    """A definition stored in one namespace is not seen from another."""
    async with MemoryPersistenceProvider(namespace="one") as store:
        await store.save_definition(StoredDefinition("t", 1, "json", V1))
        other = store.in_namespace("two")
        assert await other.list_definitions() == []
        assert [s.definition_id for s in await store.list_definitions()] == ["t"]


async def test_definition_registry_is_per_client_and_assignable() -> None:
    """A client makes its own registry on first use; assigning checks the type."""
    async with MemoryPersistenceProvider() as store:
        client = WorkflowClient(store)
        first = client.definition_registry
        assert isinstance(first, DefinitionRegistry)
        assert client.definition_registry is first
        with pytest.raises(TypeError, match="DefinitionRegistry"):
            client.definition_registry = object()  # type: ignore[assignment]
        with pytest.raises(ValueError, match="format must be one of"):
            await client.register_definition(V1, "xml")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_wfe_core_needs_no_optional_dependency() -> None:
    """import wfe_core (and wfe_core.definitions) loads none of the extra's packages;
    loading a document without them says how to install them."""
    result = _python(
        """
        import sys
        for name in ("simpleeval", "yaml", "jsonschema"):
            sys.modules[name] = None  # as if not installed
        import wfe_core, wfe_core.definitions
        from wfe_core.definitions import load_definition, DefinitionsUnavailable
        try:
            load_definition('{"Id": "x", "Version": 1, "Steps": [{"StepType": "If"}]}')
        except DefinitionsUnavailable as exc:
            print("refused:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout
    assert "pip install 'wfe-core[definitions]'" in result.stdout


def test_the_schema_ships_with_the_package() -> None:
    """schema.json is package data (the wheel includes what is inside src/wfe_core)."""
    from importlib import resources

    assert resources.files("wfe_core.definitions").joinpath("schema.json").is_file()


async def test_an_app_that_only_sets_a_definition_registry_is_an_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--app`` naming a register(host) that only sets host.definition_registry (a
    worker of stored documents) is accepted; one registering nothing is still refused."""
    from wfe_core.app_loading import AppLoadError, apply_app

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "docs_only_app.py").write_text(
        "from wfe_core.definitions import DefinitionRegistry\n"
        "def register(host):\n"
        "    host.definition_registry = DefinitionRegistry()\n"
        "def nothing(host):\n"
        "    pass\n"
    )
    async with MemoryPersistenceProvider() as store:
        assert await apply_app(WorkflowClient(store), "docs_only_app:register") == []
        with pytest.raises(AppLoadError, match="registered no workflows"):
            await apply_app(WorkflowClient(store), "docs_only_app:nothing")


def test_the_sync_client_registers_and_loads_definitions(tmp_path: Path) -> None:
    """SyncWorkflowClient mirrors register_definition (stored) and load_definition
    (this client only)."""
    from wfe_core.client.client import SyncWorkflowClient

    url = f"sqlite:///{tmp_path}/wfe.db"
    with SyncWorkflowClient.connect(url) as client:
        client.client.definition_registry = registry()
        made = client.register_definition(V1)
        assert (made.id, made.version) == ("t", 1)
        local = client.load_definition(doc([ADD]).replace('"Id": "t"', '"Id": "u"'))
        assert client.client.registry.find("u", 1) is local
    with SyncWorkflowClient.connect(url) as again:
        stored = again._run(again.client.persistence.get_definition("t", 1))  # type: ignore[attr-defined]
        assert stored.text == V1
