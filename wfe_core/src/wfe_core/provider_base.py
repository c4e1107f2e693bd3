"""An optional base class for persistence provider authors.

:class:`~wfe_core.persistence.PersistenceProvider` is a :class:`typing.Protocol`: a
provider needs no base class at all. :class:`ProviderBase` only saves writing again what
every provider repeats -- the declared ``capabilities`` and their checks, the
closed flag, ``async with`` support, a ``__repr__`` and a few argument checks -- so a
provider class can hold just its store's logic.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import ClassVar, Self

from wfe_core.capabilities import Capability
from wfe_core.errors import CapabilityNotSupported, ProviderUnavailable
from wfe_core.namespaces import DEFAULT_NAMESPACE

__all__ = ["ProviderBase"]


class ProviderBase:
    """Optional base of a persistence provider: what every provider repeats.

    A subclass declares the optional capabilities it can support in
    :attr:`supported_capabilities`, calls ``super().__init__(capabilities=...)`` (None
    declares them all; a subset declares fewer, e.g. to test how a host adapts), and
    implements the repository methods of
    :class:`~wfe_core.persistence.PersistenceProvider`. It gets:

    - :attr:`capabilities` and :meth:`require` (raises
      :class:`~wfe_core.errors.CapabilityNotSupported` for an undeclared capability);
    - :attr:`closed`, :meth:`check_open`, and :meth:`close` setting it (override to
      release resources, calling ``super().close()``);
    - ``async with provider:`` -- :meth:`ensure_store_exists` on entry (closing the
      provider again when that fails) and :meth:`close` on exit;
    - a ``__repr__`` naming the class, :attr:`store_name` and whether it is open;
    - argument checks that raise the errors the conformance suite expects:
      :meth:`check_type`, :meth:`check_time`, :meth:`check_positive` and
      :meth:`check_reason` (see also the ``check_*`` helpers of
      :mod:`wfe_core.persistence`).

    Example::

        class MyStore(ProviderBase):
            supported_capabilities = frozenset({Capability.PURGE})

            def __init__(self, url: str, *, capabilities=None) -> None:
                super().__init__(capabilities=capabilities)
                self.url = url

            @property
            def store_name(self) -> str:
                return self.url

            async def ensure_store_exists(self) -> None:
                self.check_open()
                ...  # create the tables

            async def purge_workflows(self, status, older_than) -> int:
                self.require(Capability.PURGE)
                ...

            ...  # the other repository methods

    The attributes it sets are ``_capabilities`` and ``_closed``; nothing else
    (:attr:`namespace` is a class attribute a subclass may set per instance).
    """

    supported_capabilities: ClassVar[frozenset[Capability]] = frozenset()
    """The optional capabilities this provider class can support (declared by default)."""

    namespace: str = DEFAULT_NAMESPACE
    """The namespace (:mod:`wfe_core.namespaces`) this provider's data lives in; a
    subclass that supports namespaces sets it in ``__init__``."""

    def __init__(self, *, capabilities: Iterable[Capability] | None = None) -> None:
        self._capabilities = self.parse_capabilities(capabilities)
        self._closed = False

    @classmethod
    def parse_capabilities(cls, capabilities: Iterable[Capability] | None) -> frozenset[Capability]:
        """The capabilities to declare: :attr:`supported_capabilities` for None, else
        ``capabilities`` as a frozenset (values may be given as strings). ``ValueError``
        names an unknown capability or ones this class cannot support."""
        if capabilities is None:
            return cls.supported_capabilities
        result: set[Capability] = set()
        for c in capabilities:
            try:
                result.add(Capability(c))
            except ValueError:
                raise ValueError(f"unknown capability {c!r}") from None
        unsupported = result - cls.supported_capabilities
        if unsupported:
            names = ", ".join(sorted(c.name for c in unsupported))
            raise ValueError(f"{cls.__name__} cannot support {names}")
        return frozenset(result)

    # -- capabilities --------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The optional capabilities this provider declares."""
        return self._capabilities

    def require(self, capability: Capability) -> None:
        """Raise :class:`~wfe_core.errors.CapabilityNotSupported` unless ``capability``
        is declared (call it first in each optional method)."""
        if capability not in self._capabilities:
            raise CapabilityNotSupported(capability, self)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def check_open(self) -> None:
        """Raise :class:`~wfe_core.errors.ProviderUnavailable` once the provider is closed."""
        if self._closed:
            raise ProviderUnavailable(f"{type(self).__name__} is closed")

    async def ensure_store_exists(self) -> None:
        """Create or migrate the store (idempotent). The default only checks that the
        provider is open; a provider with a schema overrides it."""
        self.check_open()

    async def close(self) -> None:
        """Mark the provider closed (later calls raise ``ProviderUnavailable``). A
        provider holding resources overrides it to release them, calling this too;
        idempotent."""
        self._closed = True

    async def __aenter__(self) -> Self:
        try:
            await self.ensure_store_exists()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- display -------------------------------------------------------------------------

    @property
    def store_name(self) -> str:
        """What the store is, for ``repr`` and messages (a path, a URL without its
        password, a label); empty by default."""
        return ""

    def describe_state(self) -> str:
        """The state shown by ``repr`` while open (``"open"`` by default)."""
        return "open"

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.describe_state()
        name = self.store_name
        label = f" {name}" if name else ""
        if self.namespace != DEFAULT_NAMESPACE and self.namespace not in label:
            label += f" namespace={self.namespace!r}"
        return f"<{type(self).__name__}{label} ({state})>"

    # -- argument checks -----------------------------------------------------------------

    @staticmethod
    def check_type(value: object, kind: type, what: str) -> None:
        """``TypeError`` unless ``value`` is a ``kind`` (``"what must be a Kind, not X"``)."""
        if not isinstance(value, kind):
            name = kind.__name__
            article = "an" if name[:1] in "AEIOU" else "a"
            raise TypeError(f"{what} must be {article} {name}, not {type(value).__name__}")

    @staticmethod
    def check_time(value: object, what: str) -> None:
        """``TypeError`` when a required time is None (whether it is aware is checked by
        :func:`wfe_core.persistence.check_aware`)."""
        if value is None:
            raise TypeError(f"{what} must be a datetime, not None")

    @staticmethod
    def check_positive(value: float, what: str) -> float:
        """``value`` when it is a positive number of seconds, else ``ValueError``."""
        if not value > 0:
            raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
        return value

    @staticmethod
    def check_reason(reason: str) -> str:
        """``reason`` when it is a non-empty string (a set-aside reason), else
        ``ValueError``."""
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"a set-aside reason must be a non-empty string, not {reason!r}")
        return reason
