"""Group commit: write batches that arrive together share one transaction.

Every step checkpoint is its own committed, synced transaction before the step after it
starts -- that does not change. What changes is that the checkpoints of *different*
workflows that are waiting at the same moment are written in one transaction, so one
commit (one ``fsync`` of the log) and, on SQLite, one hand-off to the writer's thread
serve all of them. Nobody waits for a group to fill: a group is whatever queued up
while the previous one was being written, so a lone writer pays nothing extra and a
busy store commits many checkpoints per sync.

The rules a driver's ``run`` function keeps (see :data:`RunGroup`):

- the batches run in order, in one transaction, committed once at the end;
- a batch whose **first** step has an ``expect`` and matched **no** row (a stale revision,
  an unknown id) changed nothing: it is skipped -- its outcome is a
  :class:`~wfe_sql.driver.BatchAborted` -- and the others go on;
- anything else that fails (an error, a later step's ``expect``) rolls the whole
  transaction back and raises. :class:`GroupCommit` then runs each batch of that group
  alone, so only the batch at fault fails and nothing is written twice or lost -- except
  when the error is the store's own (:class:`~wfe_core.errors.ProviderUnavailable`: locked,
  unreachable, disk full), which every batch of the group gets at once.

A caller learns its outcome only after the commit. A caller cancelled before its batch
was handed to the store withdraws it (nothing is written); once handed over, the batch
runs to its end and the cancellation propagates after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from wfe_core.errors import ProviderUnavailable

from wfe_sql.driver import BatchAborted, Op

__all__ = ["GroupCommit", "Outcome", "RunGroup", "skip_or_abort"]

_log = logging.getLogger("wfe.sql")

Outcome = list[Any] | BatchAborted
"""What one batch of a group came to: its step results, or the abort of a skipped batch."""

RunGroup = Callable[[list[Sequence[Op]], bool], Awaitable[list[Outcome]]]
"""``run(batches, durable)``: run batches in one transaction by the rules of the module
docstring; one outcome per batch, in order. ``durable`` is False when no batch of the
group needs its commit synced (lock leases, queue hints): a driver may then skip the
wait for the disk."""

_Item = tuple[Sequence[Op], "asyncio.Future[Outcome]", bool]


class GroupCommit:
    """Queue of write batches written in groups by at most ``max_groups`` transactions at
    a time, each holding at most ``max_batches`` batches (see the module docstring)."""

    def __init__(self, run: RunGroup, *, max_groups: int = 1, max_batches: int = 64) -> None:
        if max_groups < 1:
            raise ValueError(f"max_groups must be at least 1, not {max_groups!r}")
        if max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, not {max_batches!r}")
        self._run = run
        self.max_groups = max_groups
        self.max_batches = max_batches
        self._pending: list[_Item] = []
        self._writers: set[asyncio.Task[None]] = set()
        self.groups = 0
        """Transactions written so far (statistics: ``batches / groups`` is the mean group)."""
        self.batches = 0
        """Batches written so far."""
        self.synced = 0
        """Transactions written so far that had a durable batch (their commit was synced)."""

    async def submit(self, ops: Sequence[Op], *, durable: bool = True) -> list[Any]:
        """Write ``ops`` as one atomic batch (in a group); return its step results.

        ``durable=False``: a write whose loss in a power failure does no harm (see
        :meth:`~wfe_sql.driver.SqlDriver.execute`); its group is synced anyway when
        another batch in it is durable. Raises :class:`~wfe_sql.driver.BatchAborted` when
        a step's ``expect`` was not met (nothing of the batch is written), or the
        driver's error.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        item: _Item = (ops, future, durable)
        self._pending.append(item)
        self._start_writers()
        try:
            # A skipped batch's BatchAborted is set as the future's exception: it raises.
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            if item in self._pending:  # not handed over yet: withdraw it, nothing written
                self._pending.remove(item)
                future.cancel()
                raise
            while not future.done():  # handed over: it runs to its end first
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([future])
            raise  # (shield marks the future's own outcome as retrieved)
        assert not isinstance(outcome, BatchAborted)  # set as an exception, never a result
        return outcome

    async def drain(self) -> None:
        """Wait until every batch queued so far is written (or has failed)."""
        while self._writers:
            await asyncio.gather(*list(self._writers), return_exceptions=True)

    def _start_writers(self) -> None:
        # A writer takes its group when it first runs (a loop iteration later), so the
        # batches submitted in between join it; a busy writer takes more only when its
        # transaction is done, so another one starts while fewer than max_groups run.
        while self._pending and len(self._writers) < self.max_groups:
            task = asyncio.get_running_loop().create_task(self._write())
            self._writers.add(task)
            task.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        self._writers.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug, not a store error
            _log.error("group commit writer failed", exc_info=task.exception())
        if self._pending:
            self._start_writers()

    async def _write(self) -> None:
        # The group is taken when the writer runs, not when it was started: everything
        # queued in the meantime goes into it.
        while self._pending:
            group = self._pending[: self.max_batches]
            del self._pending[: self.max_batches]
            try:
                await self._write_group(group)
            except BaseException as exc:
                for _, future, _ in group:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    for _, future, _ in self._pending:
                        future.cancel()
                    self._pending.clear()
                    raise

    async def _write_group(self, group: list[_Item]) -> None:
        durable = any(d for _, _, d in group)
        try:
            outcomes = await self._run([ops for ops, _, _ in group], durable)
        except Exception as exc:
            if len(group) == 1 or isinstance(exc, ProviderUnavailable):
                # One batch, or the store itself failing (locked, unreachable, disk full):
                # writing the batches one by one would only repeat the failure (and its
                # timeout) for each of them.
                for _, future, _ in group:
                    _settle(future, exc)
                return
            # Rolled back whole: write each batch alone, so only the one at fault fails.
            _log.debug(
                "a group of %d batches failed (%r); writing them one by one", len(group), exc
            )
            for item in group:
                await self._write_group([item])
            return
        if len(outcomes) != len(group):  # pragma: no cover - a driver bug
            raise RuntimeError(f"a group of {len(group)} batches gave {len(outcomes)} outcomes")
        self.groups += 1
        self.batches += len(group)
        self.synced += durable
        for (_, future, _), outcome in zip(group, outcomes, strict=True):
            _settle(future, outcome)


def _settle(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def skip_or_abort(index: int, count: int) -> BatchAborted:
    """The abort for a step whose ``expect`` failed. A first step that matched no row
    changed nothing, so its batch may be skipped inside a group (the caller records the
    returned abort as the batch's outcome); raise it otherwise (``index`` > 0 or rows
    matched), which rolls the whole group back."""
    aborted = BatchAborted(index, count)
    if index == 0 and count == 0:
        return aborted
    raise aborted
