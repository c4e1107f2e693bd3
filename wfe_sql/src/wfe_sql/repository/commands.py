"""Scheduled commands: stored once per ``(command_name, data)``, claimed with a lease by
one processor at a time and deleted only after their handler succeeded.

Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime

from wfe_core.capabilities import Capability
from wfe_core.models import ScheduledCommand, new_id
from wfe_core.persistence import CommandHandler
from wfe_core.persistence import check_key as _check_key

from wfe_sql.driver import Op
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.times import from_micros, to_micros

__all__ = ["SqlCommandRepository"]

_log = logging.getLogger("wfe.sql")


class SqlCommandRepository(SqlRepositoryBase):
    """The :class:`~wfe_core.persistence.ScheduledCommandRepository` part of the SQL
    provider (capability ``SCHEDULED_COMMANDS``)."""

    async def schedule_command(self, command: ScheduledCommand) -> None:
        """Store a command once per ``(command_name, data)``, keeping the earlier time."""
        self.require(Capability.SCHEDULED_COMMANDS)
        self.check_type(command, ScheduledCommand, "command")
        _check_key(command.data, "command.data")
        if command.execute_time is None:
            raise TypeError("command.execute_time must be a datetime, not None")
        at = to_micros(command.execute_time, "command.execute_time")
        s = await self._ready()
        stmt = s.schedule_command
        await self.driver.execute(
            stmt.sql,
            stmt.args(
                {
                    "p_command_name": command.command_name,
                    "p_data": command.data,
                    "p_execute_time": at,
                    "p_now": self._now(),
                }
            ),
        )

    async def process_commands(self, as_of: datetime, handler: CommandHandler) -> int:
        """Claim every due command (a lease of ``command_lease`` seconds), hand each to
        ``handler``; delete it when the handler returns, release it when it raises;
        return the successes."""
        self.require(Capability.SCHEDULED_COMMANDS)
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        token = new_id()
        now = self._clock()
        claim = s.claim_commands
        rows = await self.driver.execute_returning(
            claim.sql,
            claim.args(
                {
                    "p_token": token,
                    "p_until": to_micros(now + self._lease, "clock()"),
                    "p_as_of": at,
                    "p_now": to_micros(now, "clock()"),
                }
            ),
        )
        claimed = sorted((r[2], r[0], r[1]) for r in rows)
        handled = 0
        for n, (execute_time, name, data) in enumerate(claimed):
            if self._closed:
                break
            try:
                await handler(ScheduledCommand(name, data, from_micros(execute_time)))
            except Exception:
                _log.warning("scheduled command %s(%r) failed; kept", name, data, exc_info=True)
                await self._release_commands(claimed[n : n + 1], token)
            except BaseException:
                await self._release_commands(claimed[n:], token, shielded=True)
                raise
            else:
                stmt = s.delete_command
                await self.driver.execute(
                    stmt.sql,
                    stmt.args({"p_command_name": name, "p_data": data, "p_token": token}),
                )
                handled += 1
        return handled

    async def _release_commands(
        self, claimed: Sequence[tuple[int, str, str]], token: str, *, shielded: bool = False
    ) -> None:
        """Give claimed commands back (best effort when ``shielded``: their lease expires
        anyway)."""
        if not claimed:
            return
        stmt = self._stmts.release_command

        async def release() -> None:
            await self.driver.write_batch(
                [
                    Op(
                        stmt.sql,
                        stmt.args({"p_command_name": name, "p_data": data, "p_token": token}),
                    )
                    for _, name, data in claimed
                ]
            )

        if not shielded:
            await release()
            return
        with contextlib.suppress(BaseException):
            await asyncio.shield(release())
