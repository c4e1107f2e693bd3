"""The pytest plugin of :mod:`wfe_core.testing` (entry point ``pytest11``: ``wfe``).

It gives the ``wfe_env`` fixture: a running :class:`~wfe_core.testing.WorkflowTestEnv`
with a virtual clock, for async tests run by anyio's pytest plugin
(``pytestmark = pytest.mark.anyio``; the backend must be asyncio)::

    pytestmark = pytest.mark.anyio

    async def test_payment_times_out(wfe_env: WorkflowTestEnv) -> None:
        handle = await wfe_env.start(OrderWorkflow(), OrderData("A-1"))
        instance = await wfe_env.wait_for_workflow(handle)

The store is ``memory://`` unless the ini option ``wfe_store_url`` names another one
(``{tmp_path}`` in it becomes the test's temporary directory, e.g.
``sqlite:///{tmp_path}/wfe.db``); the marker ``@pytest.mark.wfe_env(url=..., **options)``
sets the URL and any other :class:`~wfe_core.testing.WorkflowTestEnv` keyword for one
test. Loading the plugin costs nothing more: the engine is imported only when a test
asks for the fixture. Disable it with ``-p no:wfe``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from wfe_core.testing.env import WorkflowTestEnv

__all__ = ["pytest_addoption", "pytest_configure", "wfe_env"]

DEFAULT_URL = "memory://"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``wfe_store_url`` ini option."""
    parser.addini(
        "wfe_store_url",
        "store URL of the wfe_env fixture (default memory://); {tmp_path} becomes the "
        "test's temporary directory",
        default=DEFAULT_URL,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``wfe_env`` marker."""
    config.addinivalue_line(
        "markers",
        "wfe_env(url=None, **options): the store URL and other WorkflowTestEnv keywords "
        "of the wfe_env fixture for this test",
    )


@pytest.fixture
async def wfe_env(
    request: pytest.FixtureRequest, anyio_backend: Any
) -> AsyncIterator[WorkflowTestEnv]:
    """A running :class:`~wfe_core.testing.WorkflowTestEnv` (virtual clock, memory store
    unless configured otherwise: see the module)."""
    backend = anyio_backend[0] if isinstance(anyio_backend, tuple) else anyio_backend
    if backend != "asyncio":
        raise RuntimeError(
            f"the wfe_env fixture runs on asyncio, not {backend!r}: make the test's "
            "anyio_backend fixture return 'asyncio'"
        )
    from wfe_core.testing.env import WorkflowTestEnv

    options: dict[str, Any] = {}
    url = str(request.config.getini("wfe_store_url") or DEFAULT_URL)
    marker = request.node.get_closest_marker("wfe_env")
    if marker is not None:
        if marker.args:
            raise TypeError(
                "pytest.mark.wfe_env takes keywords only, e.g. "
                "@pytest.mark.wfe_env(url='sqlite:///{tmp_path}/wfe.db')"
            )
        options = dict(marker.kwargs)
        url = options.pop("url", None) or url
    if "{tmp_path}" in url:
        url = url.replace("{tmp_path}", str(request.getfixturevalue("tmp_path")))
    async with WorkflowTestEnv(url, **options) as env:
        yield env
