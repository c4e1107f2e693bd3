"""A griffe extension for the API reference: the docstrings are prose written with a few
reStructuredText habits (``:class:`~wfe_core.X``` roles, ``::`` before an indented
example); this turns them into Markdown as griffe loads each object, so the rendered
pages show ``X`` in code instead of the raw role. The source stays as it is.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::(\n[ \t]*\n)")
_SPACED_LITERAL = re.compile(r"[ \t]+::(\n[ \t]*\n)")
_LONE_LITERAL = re.compile(r"(?m)^([ \t]*)::(\n[ \t]*\n)")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    shown = target.rsplit(".", 1)[-1] if match.group(1) else target
    return f"`{shown}`"


def markdown(text: str) -> str:
    """The docstring ``text`` with reST roles as code spans and ``::`` as ``:``."""
    text = _ROLE.sub(_role, text)
    text = _LITERAL.sub(r"\1:\2", text)
    text = _SPACED_LITERAL.sub(r"\1", text)
    return _LONE_LITERAL.sub(r"\2", text)


class RstRoles(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`markdown`."""

    def on_instance(self, **kwargs: Any) -> None:
        """Called by griffe for each object it loads."""
        obj = kwargs.get("obj")
        docstring = getattr(obj, "docstring", None)
        if docstring is not None:
            docstring.value = markdown(docstring.value)
