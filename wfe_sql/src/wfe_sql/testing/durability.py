"""Durability settings on the real database: a store on disk declares ``DURABLE``, and
lock and queue writes (which may skip the wait for the disk) never weaken the
checkpoints that share their connections."""

from __future__ import annotations

from wfe_core.capabilities import Capability
from wfe_core.models import QueueType

from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.testing.base import DialectSuiteBase
from wfe_sql.testing.store import DialectStore, change, sample_instance

__all__ = ["DurabilitySettingsSuite"]


class DurabilitySettingsSuite(DialectSuiteBase):
    """What commits wait for the disk; see the ``hints_skip_the_disk_wait`` flag and
    :meth:`DialectStore.checkpoint_waits_for_disk` /
    :meth:`DialectStore.hint_waits_for_disk`."""

    async def test_a_store_on_disk_declares_durable(self, dialect_store: DialectStore) -> None:
        assert Capability.DURABLE in dialect_store.provider().capabilities
        components = dialect_store.components()
        assert components.persistence is not None
        assert Capability.DURABLE in components.persistence.capabilities

    async def test_lock_and_queue_writes_do_not_weaken_checkpoints(
        self, dialect_store: DialectStore
    ) -> None:
        components = dialect_store.components()
        persistence, lock, queue = (
            components.persistence,
            components.lock_provider,
            components.queue_provider,
        )
        assert isinstance(persistence, SqlPersistenceProvider)
        assert lock is not None
        assert queue is not None
        async with persistence:
            await lock.start()
            await queue.start()
            try:
                wid = await persistence.create_workflow(sample_instance("durable"))
                assert await dialect_store.checkpoint_waits_for_disk(persistence)
                assert await lock.acquire_lock("resource", 5.0)
                waits = await dialect_store.hint_waits_for_disk(persistence)
                assert waits is not self.hints_skip_the_disk_wait
                await queue.queue_work("item", QueueType.WORKFLOW)
                assert await dialect_store.hint_waits_for_disk(persistence) is waits
                # the next checkpoint waits for the disk again
                loaded = await persistence.get_workflow_instance(wid)
                change(loaded, 1)
                await persistence.persist_workflow(loaded)
                assert await dialect_store.checkpoint_waits_for_disk(persistence)
                await lock.release_lock("resource")
                assert await queue.dequeue_work(QueueType.WORKFLOW, 0) == "item"
            finally:
                await queue.stop()
                await lock.stop()
        async with dialect_store.provider() as fresh:
            assert (await fresh.get_workflow_instance(wid)).data == {"n": 1}
