"""Definitions as data on clients and hosts: :class:`ClientDefinitions`, a base of
:class:`~wfe_core.client.core.ClientCore`.

- ``client.definition_registry`` -- the application's
  :class:`~wfe_core.definitions.DefinitionRegistry` (made on first use; assign your own
  to share one between clients and hosts);
- ``await client.register_definition(text, format)`` -- check, build, store (so every
  host on the store runs the same version) and register here;
- ``host.load_definition(text, format)`` -- check, build and register here only
  (Workflow Core's ``LoadDefinition``), nothing stored;
- when a client or host opens it loads every stored definition, and a host meeting an
  instance whose ``(definition id, version)`` is not registered reloads it from the
  store once before giving up (:meth:`reload_definition`).

A stored ``(id, version)`` never changes, so an instance keeps running on the version
it started with whatever is stored later.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from wfe_core.definitions.errors import DefinitionNotFound, DefinitionVersionConflict
from wfe_core.definitions.registry import DefinitionRegistry
from wfe_core.definitions.store import DEFINITION_FORMATS, DefinitionRepository, StoredDefinition
from wfe_core.errors import DefinitionError, WfeError

if TYPE_CHECKING:
    from wfe_core.persistence import PersistenceProvider
    from wfe_core.serialization import Serializer
    from wfe_core.steps import WorkflowDefinition, WorkflowRegistry

__all__ = ["ClientDefinitions"]

log = logging.getLogger("wfe.host")

_RETRY_MISS = 10.0
"""Seconds before a definition that could not be loaded from the store is tried again."""


class ClientDefinitions:
    """Registering and loading definitions written as data (see the module docs)."""

    registry: WorkflowRegistry
    persistence: PersistenceProvider
    serializer: Serializer
    _definition_registry: DefinitionRegistry | None = None
    _definition_texts: dict[tuple[str, int], str] | None = None
    _definition_misses: dict[tuple[str, int], float] | None = None

    @property
    def definition_registry(self) -> DefinitionRegistry:
        """The step and data types this client's documents may name (built-ins only
        until the application adds its own); assignable."""
        if self._definition_registry is None:
            self._definition_registry = DefinitionRegistry()
        return self._definition_registry

    @definition_registry.setter
    def definition_registry(self, registry: DefinitionRegistry) -> None:
        if not isinstance(registry, DefinitionRegistry):
            raise TypeError(
                f"definition_registry must be a DefinitionRegistry, not {type(registry).__name__}"
            )
        self._definition_registry = registry

    def _texts(self) -> dict[tuple[str, int], str]:
        if self._definition_texts is None:
            self._definition_texts = {}
        return self._definition_texts

    def _build(
        self, text: str | bytes, format: str, registry: DefinitionRegistry | None
    ) -> tuple[WorkflowDefinition, str]:
        from wfe_core.definitions.loader import build_definition, parse_definition

        if format not in DEFINITION_FORMATS:
            raise ValueError(f"format must be one of {DEFINITION_FORMATS}, not {format!r}")
        parsed = parse_definition(text, format)
        definition = build_definition(parsed, registry or self.definition_registry)
        return definition, parsed.text

    def _registered(self, definition: WorkflowDefinition, text: str) -> WorkflowDefinition | None:
        """The definition registered here from the same text, None when the version is
        free; DefinitionError when it is taken (in code, or by another document)."""
        key = (definition.id, definition.version)
        known = self.registry.find(*key)
        if known is None or self._texts().get(key) == text:
            return known
        if key in self._texts():
            raise DefinitionVersionConflict(*key)
        raise DefinitionError(
            f"workflow {definition.id!r} version {definition.version} is already "
            "registered here by code (register_workflow); use another id or version"
        )

    def _add(self, definition: WorkflowDefinition, text: str) -> WorkflowDefinition:
        """Register ``definition`` here; the same text again returns the one registered."""
        key = (definition.id, definition.version)
        known = self._registered(definition, text)
        if known is not None:
            return known
        data_type = definition.data_type
        if data_type is not None and data_type not in (dict, list, str, int, float):
            with contextlib.suppress(WfeError):
                self.serializer.register(data_type)
        self.registry.add(definition)
        self._texts()[key] = text
        return definition

    def load_definition(
        self,
        text: str | bytes,
        format: str = "json",
        registry: DefinitionRegistry | None = None,
    ) -> WorkflowDefinition:
        """Check and build a document and register it on this client or host only
        (nothing is stored; other hosts do not see it). ``registry``: the step and data
        types it may name (default :attr:`definition_registry`). Raises
        :class:`~wfe_core.definitions.DefinitionLoadError` naming the path in the
        document of what is wrong."""
        definition, source = self._build(text, format, registry)
        return self._add(definition, source)

    async def register_definition(
        self,
        text: str | bytes,
        format: str = "json",
        registry: DefinitionRegistry | None = None,
    ) -> WorkflowDefinition:
        """Check and build a document, store it with its version (so every host on the
        store runs the same one) and register it here. Storing the same id and version
        again with the same text is a no-op; with another text it raises
        :class:`~wfe_core.definitions.DefinitionVersionConflict` (bump ``Version``).
        Needs a store that keeps definitions (every in-repo provider does)."""
        definition, source = self._build(text, format, registry)
        self._registered(definition, source)  # refused here: store nothing either
        store = self.persistence
        if not isinstance(store, DefinitionRepository):
            raise DefinitionError(
                f"{type(store).__name__} does not store definitions; use "
                "load_definition() to register one on this process only"
            )
        await store.save_definition(
            StoredDefinition(definition.id, definition.version, format, source)
        )
        return self._add(definition, source)

    async def _load_stored(self, stored: StoredDefinition) -> WorkflowDefinition:
        from wfe_core.definitions.loader import build_definition, parse_definition

        parsed = parse_definition(stored.text, stored.format)
        definition = build_definition(parsed, self.definition_registry)
        return self._add(definition, parsed.text)

    async def load_stored_definitions(self) -> int:
        """Register every stored definition version not registered yet; returns how
        many were added. One that does not build (a step type this application does not
        register, say) is logged and skipped. Called when a client or host opens."""
        store = self.persistence
        if not isinstance(store, DefinitionRepository):
            return 0
        added = 0
        configured = self._definition_registry is not None
        for summary in await store.list_definitions():
            key = (summary.definition_id, summary.version)
            if self.registry.find(*key) is not None:
                continue
            try:
                await self._load_stored(await store.get_definition(*key))
                added += 1
            except Exception as exc:  # one bad document must not stop the host
                # a warning when the application set up definitions, else (a client or
                # host that runs code-defined workflows only) nothing to worry about
                log.log(
                    logging.WARNING if configured else logging.DEBUG,
                    "stored definition %s v%s was not loaded: %s",
                    key[0],
                    key[1],
                    exc,
                    extra={"definition": key[0]},
                )
        return added

    async def reload_definition(
        self, definition_id: str, version: int
    ) -> WorkflowDefinition | None:
        """The definition ``(definition_id, version)``: registered here, else loaded
        from the store now (stored by another process since this one opened), else
        None. A miss is not asked of the store again for a few seconds."""
        found = self.registry.find(definition_id, version)
        if found is not None:
            return found
        store = self.persistence
        if not isinstance(store, DefinitionRepository):
            return None
        if self._definition_misses is None:
            self._definition_misses = {}
        key = (definition_id, version)
        missed = self._definition_misses.get(key)
        if missed is not None and time.monotonic() - missed < _RETRY_MISS:
            return None
        try:
            return await self._load_stored(await store.get_definition(definition_id, version))
        except DefinitionNotFound:
            pass
        except Exception as exc:
            log.warning(
                "stored definition %s v%s was not loaded: %s",
                definition_id,
                version,
                exc,
                extra={"definition": definition_id},
            )
        self._definition_misses[key] = time.monotonic()
        return None
