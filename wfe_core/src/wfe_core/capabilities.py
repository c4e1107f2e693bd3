"""Optional capabilities a persistence provider may declare.

Everything in the repository protocols that is not listed here is required of every
provider. A provider lists what it supports in ``provider.capabilities``; using an
optional method it does not declare raises
:class:`~wfe_core.errors.CapabilityNotSupported`. The host reads the set and adapts,
and the conformance suite skips the matching tests with the capability named in the
skip reason (and checks that undeclared ones really raise).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Capability"]


class Capability(StrEnum):
    """An optional feature of a persistence provider."""

    SCHEDULED_COMMANDS = "scheduled_commands"
    """``schedule_command`` and ``process_commands`` work: a command is stored once per
    ``(command_name, data)`` (a second schedule keeps the earlier ``execute_time``), is
    handed to exactly one handler across every concurrent processor once due, and is
    deleted only after that handler returned; a failing handler leaves it for a later
    pass. Without it the host relies on its poller alone for timers."""

    PURGE = "purge"
    """``purge_workflows(status, older_than)`` deletes finished (COMPLETE or TERMINATED)
    instances whose ``complete_time`` is before ``older_than``, together with their
    pointers, subscriptions and errors, and returns how many it deleted."""

    DURABLE = "durable"
    """The store outlives the provider object and the process: another provider object,
    or another process, opened on the same store (e.g. from the same URL) sees everything
    written -- instances, pointers, events, subscriptions and their claims, errors and
    scheduled commands -- both while this one is open and after it was closed. Declared
    by the SQLite (file) and PostgreSQL providers, not by the in-memory ones. Nothing
    raises for it; the conformance suite (``DurabilityTests``) proves it across close
    and reopen and across processes, given how to open the store again."""
