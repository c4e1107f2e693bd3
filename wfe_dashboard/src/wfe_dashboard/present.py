"""What the pages show, computed from the store's objects: the step timeline as a tree
of execution pointers, values as pretty-printed JSON (or as stored when they cannot be
decoded), times and durations.

The tree follows how the engine links pointers: a container step (parallel, foreach,
while, if, decide, saga) lists the first pointer of each of its paths in
``children``; every pointer inside a container has that container first in its
``scope``; and each step after the first in a path names the one before it in
``predecessor_id``. So the paths of a container are chains of pointers starting at its
children, and a loop's iterations or a parallel step's branches are its paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wfe_core.cli.output import RAW_NOTE
from wfe_core.coercion import jsonable
from wfe_core.models import ExecutionError, ExecutionPointer, PointerStatus
from wfe_core.serialization import Undecodable

__all__ = [
    "Node",
    "Shown",
    "duration",
    "pointer_tree",
    "show_value",
    "utc",
]


@dataclass
class Shown:
    """A value ready for a page: its text and whether it is shown as stored."""

    text: str
    raw: bool = False
    """True when the value could not be decoded here and is shown as stored."""
    reason: str | None = None
    """Why it could not be decoded (when ``raw``)."""
    note: str = RAW_NOTE
    """The words marking a raw value (the same as ``wfe show``)."""


def show_value(value: Any) -> Shown:
    """``value`` as indented JSON; an :class:`~wfe_core.serialization.Undecodable`
    value as its stored JSON text (indented when it parses), marked raw."""
    if isinstance(value, Undecodable):
        try:
            text = json.dumps(json.loads(value.raw), indent=2, ensure_ascii=False)
        except ValueError:
            text = value.raw
        return Shown(text, raw=True, reason=value.reason)
    try:
        return Shown(json.dumps(jsonable(value), indent=2, ensure_ascii=False, default=repr))
    except (TypeError, ValueError):
        return Shown(repr(value))


def utc(value: datetime | None) -> str:
    """``2024-05-01 12:00:00.123Z`` (milliseconds, UTC), or empty for None."""
    if value is None:
        return ""
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return text[:-3] + "Z"


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end`` (``1.234s``, ``2m 03s``, ``1h 02m``, ``3d 04h``);
    empty when either is missing."""
    if start is None or end is None:
        return ""
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


@dataclass
class Node:
    """One execution pointer in the timeline, with the paths it contains."""

    pointer: ExecutionPointer
    number: int
    """Its position in the instance's pointer list, from 1."""
    paths: list[list[Node]] = field(default_factory=list)
    """Its paths (branches, iterations, items), each a chain of nodes, in start order."""
    errors: list[ExecutionError] = field(default_factory=list)
    """The errors recorded for this pointer, oldest first."""

    @property
    def name(self) -> str:
        """The step's name, else its step id."""
        return self.pointer.step_name or f"step {self.pointer.step_id}"

    @property
    def waiting(self) -> bool:
        """Whether it waits for an event that has not come."""
        p = self.pointer
        return p.event_name is not None and not p.event_published and p.end_time is None

    @property
    def sleeping(self) -> bool:
        """Whether it sleeps (a delay, a retry back-off, a wait's timeout)."""
        p = self.pointer
        return p.sleep_until is not None and p.end_time is None

    @property
    def failed(self) -> bool:
        """Whether it ended in failure or recorded errors."""
        return self.pointer.status is PointerStatus.FAILED or bool(self.errors)


def _chain(
    start: ExecutionPointer, successors: dict[str, list[ExecutionPointer]], seen: set[str]
) -> list[ExecutionPointer]:
    """``start`` and every pointer reached from it through ``predecessor_id`` links."""
    chain = [start]
    seen.add(start.id)
    i = 0
    while i < len(chain):
        for nxt in successors.get(chain[i].id, ()):
            if nxt.id not in seen:
                seen.add(nxt.id)
                chain.append(nxt)
        i += 1
    return chain


def pointer_tree(
    pointers: list[ExecutionPointer], errors: list[ExecutionError] | None = None
) -> list[Node]:
    """The top-level chain of the instance's timeline; containers hold their paths.

    Pointers the links do not reach (a store written by an older engine, a pointer
    whose container is gone) are appended to their level, so none is ever hidden."""
    number = {p.id: n for n, p in enumerate(pointers, 1)}
    by_errors: dict[str, list[ExecutionError]] = {}
    for e in errors or ():
        by_errors.setdefault(e.execution_pointer_id or "", []).append(e)
    levels: dict[str | None, list[ExecutionPointer]] = {}
    for p in pointers:
        container = p.scope[0] if p.scope and p.scope[0] in number else None
        levels.setdefault(container, []).append(p)

    def node(p: ExecutionPointer) -> Node:
        n = Node(p, number[p.id], errors=by_errors.get(p.id, []))
        inside = levels.get(p.id, [])
        if inside:
            n.paths = [[node(q) for q in chain] for chain in _paths(p, inside)]
        return n

    return [node(p) for chain in _paths(None, levels.get(None, [])) for p in chain]


def _paths(
    container: ExecutionPointer | None, level: list[ExecutionPointer]
) -> list[list[ExecutionPointer]]:
    """The chains of one level: one per child of ``container`` (or per pointer without a
    predecessor on the level), then one per pointer left over."""
    ids = {p.id for p in level}
    successors: dict[str, list[ExecutionPointer]] = {}
    for p in level:
        if p.predecessor_id is not None and p.predecessor_id in ids:
            successors.setdefault(p.predecessor_id, []).append(p)
    by_id = {p.id: p for p in level}
    starts = [by_id[c] for c in (container.children if container else ()) if c in by_id]
    starts += [p for p in level if (p.predecessor_id is None or p.predecessor_id not in ids)]
    seen: set[str] = set()
    chains = [_chain(s, successors, seen) for s in starts if s.id not in seen]
    chains += [_chain(p, successors, seen) for p in level if p.id not in seen]
    position = {p.id: n for n, p in enumerate(level)}
    chains.sort(key=lambda chain: position[chain[0].id])  # in the order they started
    if container is None and chains:  # the top level reads as one sequence
        return [[p for chain in chains for p in chain]]
    return chains
