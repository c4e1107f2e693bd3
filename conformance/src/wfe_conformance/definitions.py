"""Conformance suite for stored definitions: the
:class:`~wfe_core.definitions.DefinitionRepository` part of a store (definitions as
data). A version is stored once and never changes: the same text again is a no-op,
another text is refused; reads give the exact version or the newest; listing is by id
and version; namespaces keep their documents apart.

A provider that does not implement the protocol has every test skipped with the reason.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from wfe_core.definitions.errors import DefinitionNotFound, DefinitionVersionConflict
from wfe_core.definitions.store import DefinitionRepository, StoredDefinition
from wfe_core.models import new_id
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import BASE_TIME

__all__ = ["DefinitionStoreTests"]


def _store(provider: PersistenceProvider) -> DefinitionRepository:
    if not isinstance(provider, DefinitionRepository):
        pytest.skip(
            f"{type(provider).__name__} does not implement wfe_core.definitions."
            "DefinitionRepository (save_definition, get_definition, list_definitions)"
        )
    return provider


def _doc(definition_id: str, version: int, note: str = "") -> StoredDefinition:
    text = f'{{"Id": "{definition_id}", "Version": {version}, "Steps": []}} {note}'
    return StoredDefinition(definition_id, version, "json", text, BASE_TIME)


class DefinitionStoreTests(SuiteBase):
    """Definition documents are stored faithfully, once per id and version."""

    async def test_definition_round_trip(self, provider: PersistenceProvider) -> None:
        """save / get give back the id, version, format, text and time (as UTC)."""
        store = _store(provider)
        made = StoredDefinition(new_id(), 3, "yaml", "Id: x\nVersion: 3\n# ünïcødé ✓\n", BASE_TIME)
        assert await store.save_definition(made) is True
        got = await store.get_definition(made.definition_id, 3)
        assert got == made
        assert got.create_time.utcoffset() == timedelta(0)
        assert got.create_time.tzinfo is not None

    async def test_same_text_again_is_a_no_op(self, provider: PersistenceProvider) -> None:
        """Saving the same id, version and text again returns False and changes nothing."""
        store = _store(provider)
        made = _doc(new_id(), 1)
        assert await store.save_definition(made) is True
        later = StoredDefinition(
            made.definition_id, 1, "json", made.text, BASE_TIME + timedelta(days=1)
        )
        assert await store.save_definition(later) is False
        assert (await store.get_definition(made.definition_id, 1)).create_time == BASE_TIME
        assert len(await store.list_definitions(made.definition_id)) == 1

    async def test_other_text_for_a_stored_version_is_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """Another text under a stored id and version raises DefinitionVersionConflict;
        the stored text stays."""
        store = _store(provider)
        made = _doc(new_id(), 1)
        await store.save_definition(made)
        with pytest.raises(DefinitionVersionConflict) as refused:
            await store.save_definition(_doc(made.definition_id, 1, "changed"))
        assert "bump" in str(refused.value).lower()
        assert (await store.get_definition(made.definition_id, 1)).text == made.text

    async def test_newest_version_is_the_default(self, provider: PersistenceProvider) -> None:
        """get without a version returns the highest version, whatever the save order."""
        store = _store(provider)
        definition_id = new_id()
        for version in (2, 10, 1):
            await store.save_definition(_doc(definition_id, version))
        assert (await store.get_definition(definition_id)).version == 10
        assert (await store.get_definition(definition_id, 2)).version == 2

    async def test_unknown_definition_raises(self, provider: PersistenceProvider) -> None:
        """An unknown id, or an unknown version of a known id, raises DefinitionNotFound."""
        store = _store(provider)
        with pytest.raises(DefinitionNotFound):
            await store.get_definition(new_id())
        made = _doc(new_id(), 1)
        await store.save_definition(made)
        with pytest.raises(DefinitionNotFound):
            await store.get_definition(made.definition_id, 2)

    async def test_listing_is_by_id_then_version(self, provider: PersistenceProvider) -> None:
        """list_definitions gives every version by id then version (numerically), or
        one id's versions; without texts."""
        store = _store(provider)
        a, b = sorted([new_id(), new_id()])
        for definition_id, version in ((b, 1), (a, 10), (a, 2), (b, 3)):
            await store.save_definition(_doc(definition_id, version))
        listed = [
            (s.definition_id, s.version)
            for s in await store.list_definitions()
            if s.definition_id in (a, b)
        ]
        assert listed == [(a, 2), (a, 10), (b, 1), (b, 3)]
        only = await store.list_definitions(b)
        assert [(s.definition_id, s.version, s.format) for s in only] == [
            (b, 1, "json"),
            (b, 3, "json"),
        ]
        assert only[0].create_time.tzinfo is not None

    async def test_concurrent_saves_of_one_version_store_one(
        self, provider: PersistenceProvider
    ) -> None:
        """Concurrent saves of one id and version with different texts: one is
        stored, every other caller gets DefinitionVersionConflict."""
        store = _store(provider)
        definition_id = new_id()
        results = await asyncio.gather(
            *(store.save_definition(_doc(definition_id, 1, f"n{i}")) for i in range(5)),
            return_exceptions=True,
        )
        stored = [r for r in results if r is True]
        refused = [r for r in results if isinstance(r, DefinitionVersionConflict)]
        assert (len(stored), len(refused)) == (1, 4), results
        kept = await store.get_definition(definition_id, 1)
        assert kept.text in {_doc(definition_id, 1, f"n{i}").text for i in range(5)}

    async def test_invalid_definitions_are_refused(self, provider: PersistenceProvider) -> None:
        """A version below 1, an unknown format or a naive time raises before storing."""
        store = _store(provider)
        definition_id = new_id()
        with pytest.raises(ValueError, match="version"):
            await store.save_definition(StoredDefinition(definition_id, 0, "json", "{}"))
        with pytest.raises(ValueError, match="format"):
            await store.save_definition(StoredDefinition(definition_id, 1, "xml", "<x/>"))
        with pytest.raises(ValueError, match="create_time"):
            await store.save_definition(
                StoredDefinition(definition_id, 1, "json", "{}", BASE_TIME.replace(tzinfo=None))
            )
        assert await store.list_definitions(definition_id) == []
