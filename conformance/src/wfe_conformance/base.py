"""What every conformance suite shares: the fixtures a provider overrides, the anyio
wiring, capability requirements and the guard against silently weakened tests.

A suite is a plain class named ``*Tests`` (pytest never collects it by itself); a
provider runs it by subclassing it in a ``Test*`` class and overriding the
``provider`` fixture (and ``lock_provider`` / ``queue_provider`` for those roles).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from wfe_core.capabilities import Capability
from wfe_core.locks import DistributedLockProvider
from wfe_core.persistence import PersistenceProvider
from wfe_core.queues import QueueProvider

if TYPE_CHECKING:
    from wfe_conformance.durability import StoreOpener

__all__ = ["SuiteBase", "requires"]

F = TypeVar("F", bound=Callable[..., Any])

_REQUIRES_ATTR = "__wfe_requires__"


def requires(*capabilities: Capability) -> Callable[[F], F]:
    """Mark a suite test as needing optional capabilities of the provider.

    When the provider does not declare one of them the test is skipped with a reason
    that names the capability (see ``pytest -rs``).
    """

    def mark(fn: F) -> F:
        setattr(fn, _REQUIRES_ATTR, frozenset(capabilities))
        return fn

    return mark


def _suite_classes(cls: type) -> list[type]:
    return [
        c
        for c in cls.__mro__
        if c.__module__.startswith("wfe_conformance") and c.__name__.endswith("Tests")
    ]


def _xfail_reason(fn: Any) -> str | None:
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "xfail":
            reason = mark.kwargs.get("reason") or (mark.args[1] if len(mark.args) > 1 else "")
            if isinstance(reason, str) and reason.strip():
                return reason
    return None


class SuiteBase:
    """Base of every conformance suite class: fixtures and guards."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Run the async tests of the suite on asyncio."""
        return "asyncio"

    @pytest.fixture(autouse=True)
    def _wfe_use_anyio(self, anyio_backend: str) -> None:
        """Request the anyio backend so async tests and fixtures run through anyio's
        pytest plugin, with or without pytest-asyncio, in strict or auto mode."""

    @pytest.fixture(autouse=True)
    def _wfe_capability_requirements(self, request: pytest.FixtureRequest) -> None:
        """Skip a test whose required capabilities the provider does not declare."""
        needed: frozenset[Capability] = getattr(request.function, _REQUIRES_ATTR, frozenset())
        if not needed:
            return
        provider = request.getfixturevalue("provider")
        missing = sorted(c.name for c in needed - provider.capabilities)
        if missing:
            pytest.skip(
                f"{type(provider).__name__} does not declare capability " + ", ".join(missing)
            )

    @pytest.fixture
    async def provider(self) -> PersistenceProvider:
        """A fresh, empty, isolated persistence provider: override this fixture."""
        raise NotImplementedError(
            "override the `provider` fixture in your Test* class: it must yield a fresh, "
            "empty, isolated PersistenceProvider"
        )

    @pytest.fixture
    def store_opener(self) -> StoreOpener:
        """How to open the store ``provider`` is on again -- another provider object on
        the same store, in this process or another (a
        :class:`~wfe_conformance.durability.StoreOpener`). Needed only by providers
        declaring ``DURABLE``: override it then."""
        raise NotImplementedError(
            "your provider declares Capability.DURABLE: override the `store_opener` "
            "fixture to return a wfe_conformance.StoreOpener (a store URL, or an "
            "importable 'package.module:callable' with JSON-able options) that opens the "
            "very store the `provider` fixture is on"
        )

    @pytest.fixture
    async def lock_provider(self) -> AsyncIterator[DistributedLockProvider]:
        """The lock provider under test (default: the in-process one)."""
        from wfe_core.locks import InProcessLockProvider, LockTable

        table = LockTable()
        self._wfe_lock_table = table
        lock = InProcessLockProvider(table)
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def second_lock_provider(
        self, lock_provider: DistributedLockProvider
    ) -> AsyncIterator[DistributedLockProvider]:
        """A second lock provider on the same backend as ``lock_provider``: another
        owner, as another host would be. Override together with ``lock_provider``."""
        from wfe_core.locks import InProcessLockProvider

        table = getattr(self, "_wfe_lock_table", None)
        if table is None:
            raise NotImplementedError(
                "you overrode `lock_provider`: override `second_lock_provider` too, "
                "returning another provider instance on the same backend"
            )
        lock = InProcessLockProvider(table)
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def queue_provider(self) -> AsyncIterator[QueueProvider]:
        """The queue provider under test (default: the in-process one)."""
        from wfe_core.queues import InProcessQueueProvider

        queue = InProcessQueueProvider()
        await queue.start()
        yield queue
        await queue.stop()

    def test_suite_tests_are_not_weakened(self) -> None:
        """A suite test may only be overridden by a test marked xfail with a reason."""
        problems: list[str] = []
        suites = _suite_classes(type(self))
        for suite in suites:
            for name, original in vars(suite).items():
                if not name.startswith("test_") or not inspect.isfunction(original):
                    continue
                resolved = inspect.getattr_static(type(self), name)
                for mark in getattr(resolved, "pytestmark", []):
                    if mark.name in ("skip", "skipif"):
                        problems.append(f"{name}: suite tests may not be skipped ({mark.name})")
                if resolved is original or any(resolved is vars(s).get(name) for s in suites):
                    continue
                if _xfail_reason(resolved) is None:
                    problems.append(
                        f"{name}: overridden in {type(self).__name__} without "
                        "@pytest.mark.xfail(reason=...)"
                    )
        assert not problems, "weakened conformance tests:\n" + "\n".join(problems)
