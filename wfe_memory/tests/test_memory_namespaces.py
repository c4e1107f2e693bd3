"""Namespaces of the memory store: the keyword, ``?namespace=`` and ``WFE_NAMESPACE``,
and the siblings ``in_namespace`` returns (the conformance suite's ``NamespaceTests``
proves the isolation; these pin the memory-specific API)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from wfe_core.capabilities import Capability
from wfe_core.errors import ProviderUnavailable, WorkflowNotFound
from wfe_core.locks import shared_lock_table
from wfe_core.models import WorkflowInstance
from wfe_core.namespaces import NAMESPACE_ENV
from wfe_core.registry import open_store
from wfe_core.serialization import Serializer

from wfe_memory import MemoryPersistenceProvider, provider_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_namespace_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without WFE_NAMESPACE (a test sets it when it needs it)."""
    monkeypatch.delenv(NAMESPACE_ENV, raising=False)


def test_default_namespace_without_keyword_url_or_env() -> None:
    assert MemoryPersistenceProvider().namespace == "default"
    assert provider_from_url("memory://").namespace == "default"


def test_keyword_url_and_env_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """keyword > ?namespace= > WFE_NAMESPACE > default."""
    monkeypatch.setenv(NAMESPACE_ENV, "from_env")
    assert MemoryPersistenceProvider().namespace == "from_env"
    assert provider_from_url("memory://").namespace == "from_env"
    assert provider_from_url("memory://x?namespace=from_url").namespace == "from_url"
    assert MemoryPersistenceProvider(namespace="kw").namespace == "kw"
    both = provider_from_url("memory://x?namespace=from_url", namespace="kw")
    assert (both.namespace, both.name) == ("kw", "x")
    monkeypatch.setenv(NAMESPACE_ENV, "")
    assert MemoryPersistenceProvider().namespace == "default"


def test_open_store_passes_the_namespace() -> None:
    components = open_store("memory://named?namespace=tenant_42")
    assert components.persistence is not None
    assert getattr(components.persistence, "namespace", None) == "tenant_42"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://?namespace=Bad-Name", r"\?namespace= in the store URL 'Bad-Name'"),
        ("memory://?namespace=", r"\?namespace= in the store URL is empty"),
        ("memory://?colour=red", r"unknown option 'colour'.*takes only \?namespace="),
        ("memory://?namespace=a&namespace=b", "'namespace' is given more than once"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        provider_from_url(url)


def test_bad_keyword_and_env_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'Prod' is not a valid namespace"):
        MemoryPersistenceProvider(namespace="Prod")
    with pytest.raises(TypeError, match="namespace must be a string, not int"):
        MemoryPersistenceProvider(namespace=7)  # type: ignore[arg-type]
    monkeypatch.setenv(NAMESPACE_ENV, "no spaces")
    with pytest.raises(ValueError, match=f"{NAMESPACE_ENV} 'no spaces' is not a valid"):
        MemoryPersistenceProvider()


def test_in_namespace_returns_one_sibling_per_namespace() -> None:
    def clock() -> datetime:
        return datetime(2030, 1, 1, tzinfo=UTC)

    serializer = Serializer()
    p = MemoryPersistenceProvider(
        capabilities=[Capability.PURGE], serializer=serializer, clock=clock, name="db"
    )
    a = p.in_namespace("tenant_a")
    assert p.in_namespace(p.namespace) is p
    assert p.in_namespace("tenant_a") is a
    assert a.in_namespace("default") is p
    assert a.in_namespace("tenant_b") is p.in_namespace("tenant_b")
    assert a.namespace == "tenant_a"
    assert a.capabilities == p.capabilities == frozenset({Capability.PURGE})
    assert a._serializer is serializer
    assert a._clock is clock
    assert a.name == "db"
    assert "namespace='tenant_a'" in repr(a)
    assert "namespace" not in repr(p)
    assert shared_lock_table(a) is not shared_lock_table(p)
    with pytest.raises(ValueError, match="not a valid namespace"):
        p.in_namespace("UPPER")


async def test_siblings_keep_their_data_apart() -> None:
    async with MemoryPersistenceProvider() as p:
        a = p.in_namespace("tenant_a")
        workflow_id = await a.create_workflow(WorkflowInstance(workflow_definition_id="d"))
        with pytest.raises(WorkflowNotFound):
            await p.get_workflow_instance(workflow_id)
        assert (await a.get_workflow_instance(workflow_id)).id == workflow_id
        assert "1 instances" in repr(a)
        assert "0 instances" in repr(p)


async def test_closing_a_sibling_leaves_the_others() -> None:
    async with MemoryPersistenceProvider() as p:
        a = p.in_namespace("tenant_a")
        kept = await p.create_workflow(WorkflowInstance(workflow_definition_id="d"))
        gone = await a.create_workflow(WorkflowInstance(workflow_definition_id="d"))
        await a.close()
        with pytest.raises(ProviderUnavailable):
            await a.get_workflow_instance(gone)
        with pytest.raises(ProviderUnavailable, match="in_namespace"):
            a.in_namespace("tenant_b")
        assert (await p.get_workflow_instance(kept)).id == kept
        reopened = p.in_namespace("tenant_a")
        assert reopened is not a
        with pytest.raises(WorkflowNotFound):
            await reopened.get_workflow_instance(gone)
        await reopened.close()
