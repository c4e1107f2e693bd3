"""The one place where ``wfe`` opens a store.

Every command but ``worker`` and ``demo`` works through :func:`client` (or
:func:`reader` for the commands that only read) and gets a :class:`Session`: a
``client`` that starts, publishes, controls and reads
(``start_workflow``, ``publish_event``, ``suspend_workflow`` / ``resume_workflow`` /
``terminate_workflow``, ``get_workflow_instance``, ``get_errors`` and ``persistence``
for the store's own reads), and the definitions ``--app`` registered. Nothing runs in
the ``wfe`` process itself: the worker that serves the store picks the work up.

``wfe worker`` gets its host from :func:`open_worker`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from wfe_core.cli.app import apply_app
from wfe_core.cli.options import SERVICE_OPTIONS, Services, store_namespace
from wfe_core.client import WorkflowClient
from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import (
    EventNotFound,
    ProviderNotFound,
    SerializationError,
    WfeError,
    WorkflowNotFound,
    WorkflowNotRegistered,
)
from wfe_core.host import HostOptions, WorkflowHost
from wfe_core.registry import redact_url, supports_read_only

__all__ = ["Client", "Session", "client", "open_client", "open_host", "open_worker", "reader"]

_C = TypeVar("_C", bound=WorkflowClient)

Client = WorkflowClient
"""What a command talks to the store through: a :class:`~wfe_core.client.WorkflowClient`
(nothing runs workflows in the ``wfe`` process)."""


@dataclass
class Session:
    """What a command gets from :func:`client` or :func:`reader`."""

    client: Client
    """Starts, publishes, controls and reads; ``client.persistence`` is the store."""
    definitions: list[WorkflowDefinition] = field(default_factory=list)
    """The definitions ``--app`` registered (none without ``--app``)."""

    def definition(self, definition_id: str, version: int | None = None) -> WorkflowDefinition:
        """The registered definition (the newest version when ``version`` is None);
        raises :class:`~wfe_core.errors.WorkflowNotRegistered`."""
        found = [
            d
            for d in self.definitions
            if d.id == definition_id and (version is None or d.version == version)
        ]
        if not found:
            raise WorkflowNotRegistered(definition_id, version)
        return max(found, key=lambda d: d.version)


def open_host(
    url: str,
    *,
    services: Services | None = None,
    options: HostOptions | None = None,
    read_only: bool = False,
) -> WorkflowHost:
    """``WorkflowHost.from_url`` with bad URLs reported as bad ``--url`` (or
    ``--lock-url`` ...) values."""
    return _open(WorkflowHost, url, services=services, options=options, read_only=read_only)


def open_client(
    url: str, *, services: Services | None = None, read_only: bool = False
) -> WorkflowClient:
    """``WorkflowClient.from_url`` with bad URLs reported as bad ``--url`` (or
    ``--lock-url`` ...) values."""
    return _open(WorkflowClient, url, services=services, read_only=read_only)


def _open(
    kind: type[_C],
    url: str,
    *,
    services: Services | None = None,
    options: HostOptions | None = None,
    read_only: bool = False,
) -> _C:
    services = services or Services()
    extra: dict[str, Any] = {"read_only": True} if read_only else {}
    namespace = store_namespace(url)
    if namespace is not None:
        extra["namespace"] = namespace
    try:
        return kind.from_url(
            url,
            lock_url=services.lock_url,
            queue_url=services.queue_url,
            lifecycle_url=services.lifecycle_url,
            options=options,
            **extra,
        )
    except (ProviderNotFound, ValueError, TypeError) as exc:
        hint, message = "--url", str(exc)
        for flag, name, _env, role, _text in SERVICE_OPTIONS:
            value = getattr(services, name)
            if value is not None and (
                redact_url(value) in message or f"provides no {role} provider" in message
            ):
                hint = flag
        if namespace is not None and "namespace" in message:
            hint = "--namespace"
        raise click.BadParameter(message, param_hint=hint) from exc
    except WfeError as exc:
        raise click.ClickException(f"cannot open the store {redact_url(url)}: {exc}") from exc


async def open_worker(
    url: str, app: str, services: Services, options: HostOptions
) -> tuple[WorkflowHost, list[WorkflowDefinition]]:
    """A (not yet started) host for ``wfe worker`` with ``app`` registered, and the
    definitions registered; the store is closed again if registering fails."""
    host = open_host(url, services=services, options=options)
    try:
        return host, await apply_app(host, app)
    except BaseException:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise


async def _prepared(host: Client, app: str | None) -> Session:
    """A session on ``host`` with the demo's types and ``app`` registered (the store is
    closed if that fails)."""
    try:
        from wfe_core.demo import OrderData, Payment

        host.register_type(OrderData, Payment)  # so `wfe show` reads the demo's orders
        definitions = await apply_app(host, app) if app is not None else []
    except BaseException:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise
    return Session(host, definitions)


def _store_error(url: str, exc: WfeError) -> BaseException:
    """What a command reports for a wfe error raised while it used the store."""
    if isinstance(exc, WorkflowNotFound | EventNotFound | SerializationError | ProviderNotFound):
        return exc
    return click.ClickException(f"{redact_url(url)}: {exc} ({type(exc).__name__})")


@asynccontextmanager
async def client(
    url: str, app: str | None = None, services: Services | None = None
) -> AsyncIterator[Session]:
    """A client session on ``url`` with ``app`` registered (the store made ready, the
    lock, queue and lifecycle services running, no workflow run here), taking its lock,
    queue and lifecycle publisher from ``services`` where given."""
    session = await _prepared(open_client(url, services=services), app)
    try:
        async with session.client:
            yield session
    except WfeError as exc:
        error = _store_error(url, exc)
        if error is exc:
            raise
        raise error from exc


@asynccontextmanager
async def reader(url: str, app: str | None = None) -> AsyncIterator[Session]:
    """A session for commands that only read (``list``, ``show``): the store is opened
    read-only where its provider supports it (``open_store(url, read_only=True)``: for
    SQLite, a read-only file or one another process holds the write lock on can be
    read), and nothing but the store is started. When the store cannot be read that
    way -- it does not exist yet, or its schema must first be created or upgraded --
    it is opened as every other command opens it."""
    try:
        read_only = supports_read_only(url)
    except (ProviderNotFound, ValueError, TypeError):
        read_only = False  # open_client reports it
    if read_only:
        session = await _prepared(open_client(url, read_only=True), app)
        store = session.client.persistence
        try:
            await store.ensure_store_exists()
        except WfeError:
            with contextlib.suppress(Exception):
                await store.close()
            read_only = False
        except BaseException:
            with contextlib.suppress(Exception):
                await store.close()
            raise
    if not read_only:
        async with client(url, app) as session:
            yield session
        return
    try:
        yield session
    except WfeError as exc:
        error = _store_error(url, exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        with contextlib.suppress(Exception):
            await store.close()
