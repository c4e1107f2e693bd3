"""What every part of the SQL persistence provider shares: the driver, the compiled
statements, the lifecycle and the clock.

:class:`SqlRepositoryBase` is the common base of the repository mixins
(:mod:`wfe_sql.repository.workflows`, ``.subscriptions``, ``.events``, ``.commands``,
``.errors``) that :class:`~wfe_sql.SqlPersistenceProvider` combines. Internal to
:mod:`wfe_sql`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from wfe_core.capabilities import Capability
from wfe_core.errors import ProviderUnavailable
from wfe_core.models import utcnow
from wfe_core.provider_base import ProviderBase
from wfe_core.serialization import Serializer, default_serializer

from wfe_sql.driver import SqlDriver
from wfe_sql.repository.codec import RowCodec
from wfe_sql.statements import ProviderStatements
from wfe_sql.times import to_micros

__all__ = ["SqlRepositoryBase"]


class SqlRepositoryBase(ProviderBase, RowCodec):
    """The state and lifecycle of :class:`~wfe_sql.SqlPersistenceProvider` (see there
    for the constructor's arguments)."""

    supported_capabilities = frozenset(
        {Capability.SCHEDULED_COMMANDS, Capability.PURGE, Capability.DURABLE}
    )

    def __init__(
        self,
        driver: SqlDriver,
        *,
        serializer: Serializer | None = None,
        clock: Callable[[], datetime] = utcnow,
        capabilities: Iterable[Capability] | None = None,
        command_lease: float = 60.0,
    ) -> None:
        super().__init__(capabilities=capabilities)
        self.check_positive(command_lease, "command_lease")
        self.driver = driver
        self.namespace = driver.namespace
        self._init_codec(serializer if serializer is not None else default_serializer)
        self._clock = clock
        self._lease = timedelta(seconds=command_lease)
        self._stmts: ProviderStatements = driver.cached("wfe_sql.provider", ProviderStatements)
        self._attached = False

    @property
    def store_name(self) -> str:
        """The driver's name for the store (a path or a URL without its password)."""
        return self.driver.name

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        """``SCHEDULED_COMMANDS``, ``PURGE`` and ``DURABLE`` unless constructed with fewer."""
        return self._capabilities

    async def ensure_store_exists(self) -> None:
        """Create or migrate the schema (idempotent; safe from several processes at once)."""
        await self._ready()

    async def close(self) -> None:
        """Release this provider's hold on the connections; later calls raise
        ``ProviderUnavailable``. Idempotent."""
        if self._closed:
            return
        await super().close()
        if self._attached:
            self._attached = False
            await self.driver.detach(self)

    async def _ready(self) -> ProviderStatements:
        """Check the provider is open, attach to the driver and make sure of the schema."""
        if self._closed:
            raise ProviderUnavailable(f"{type(self).__name__} for {self.driver.name} is closed")
        driver = self.driver
        if not self._attached:
            driver.attach(self)
            self._attached = True
        await driver.ensure_schema()
        return self._stmts

    def _now(self) -> int:
        """The current time by the provider's clock, in stored microseconds."""
        return to_micros(self._clock(), "clock()")
