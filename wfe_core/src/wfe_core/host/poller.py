"""The poller: one host at a time per store (elected through the lock provider)
re-finds due workflows, pending control requests, unprocessed events and due
scheduled commands, so a lost queue entry delays work but never loses it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from wfe_core.capabilities import Capability
from wfe_core.host.dispatch import WorkDispatcher, log_outage
from wfe_core.host.schedules import ScheduleFirer
from wfe_core.locks import DistributedLockProvider
from wfe_core.models import QueueType, ScheduledCommand, utcnow
from wfe_core.options import HostOptions
from wfe_core.persistence import PersistenceProvider
from wfe_core.retry import backoff_delay

__all__ = ["Poller"]

log = logging.getLogger("wfe.host")


class Poller:
    """Looks for due work every ``poll_interval`` seconds and queues it."""

    def __init__(
        self,
        persistence: PersistenceProvider,
        lock_provider: DistributedLockProvider,
        dispatcher: WorkDispatcher,
        options: HostOptions,
        is_active: Callable[[str], bool],
    ) -> None:
        self.persistence = persistence
        self.lock_provider = lock_provider
        self.dispatcher = dispatcher
        self.options = options
        self._is_active = is_active
        self.schedules: ScheduleFirer | None = None
        """Fires due schedules on every poll (no lock needed: see its module)."""

    async def run(self) -> None:
        """Poll until the host stops; back off while the store fails."""
        failures = 0
        while self.dispatcher.running:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                # poll_interval * 2 ** failures, at most 30 s, jittered
                interval = self.options.poll_interval
                delay = backoff_delay(failures + 1, interval, 2.0, 30.0, jitter=0.2)
                log_outage("polling for due work", exc, failures, delay)
                await self.dispatcher.sleep(delay)
                continue
            if failures:
                log.info("polling works again")
                failures = 0
            await self.dispatcher.sleep(self.options.poll_interval)

    async def poll_once(self) -> None:
        """One look for due workflows, control requests, events and commands."""
        ttl = max(self.options.poll_interval * 5, 5.0)
        lock = self.lock_provider
        queue = self.dispatcher.queue_provider
        now = utcnow()
        if await lock.acquire_lock("wfe:poll:workflows", ttl):
            try:
                for wid in await self.persistence.get_runnable_instances(
                    now, self.options.poll_batch
                ):
                    if not self._is_active(wid):
                        await queue.queue_work(wid, QueueType.WORKFLOW)
                # control requests whose holder stopped before applying them
                for wid in await self.persistence.get_pending_controls(as_at=now):
                    if not self._is_active(wid):
                        await queue.queue_work(wid, QueueType.WORKFLOW)
            finally:
                await lock.release_lock("wfe:poll:workflows")
        if await lock.acquire_lock("wfe:poll:events", ttl):
            try:
                for eid in await self.persistence.get_runnable_events(now, self.options.poll_batch):
                    await queue.queue_work(eid, QueueType.EVENT)
            finally:
                await lock.release_lock("wfe:poll:events")
        if (
            Capability.SCHEDULED_COMMANDS in self.persistence.capabilities
            and await lock.acquire_lock("wfe:poll:commands", ttl)
        ):
            try:
                await self.persistence.process_commands(now, self._run_command)
            finally:
                await lock.release_lock("wfe:poll:commands")
        if self.schedules is not None:
            await self.schedules.fire_due(now)

    async def _run_command(self, command: ScheduledCommand) -> None:
        queue = (
            QueueType.EVENT
            if command.command_name == ScheduledCommand.PROCESS_EVENT
            else QueueType.WORKFLOW
        )
        await self.dispatcher.queue_provider.queue_work(command.data, queue)
