"""Code blocks of Markdown pages, and running them: shared by the README and docs tests.

A block is a fenced block (three backticks and a language). The HTML comment on the line
right before its fence, if any, is its *marker* (see ``tests/test_docs.py`` for the
markers the docs use): ``<!-- docs-test: skip -->`` for a fragment that must not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->\s*$")

# Variables a developer's shell may set that would move an example's store elsewhere.
_UNSET = ("WFE_URL", "WFE_NAMESPACE", "WFE_CONFIG", "WFE_APP", "WFE_LOCK_URL", "WFE_QUEUE_URL")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: where it is, its language, its code and its marker."""

    path: Path
    line: int
    language: str
    code: str
    marker: str | None

    @property
    def where(self) -> str:
        """``page.md:line`` of the opening fence, for test ids and messages."""
        return f"{self.path.name}:{self.line}"


def code_blocks(path: Path, language: str | None = None) -> list[CodeBlock]:
    """The fenced blocks of the Markdown file ``path`` (only ``language``'s if given)."""
    text = path.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        if language is not None and match.group(1) != language:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        blocks.append(
            CodeBlock(path, line, match.group(1), match.group(2), marker and marker.group(1))
        )
    return blocks


def run_python(
    code: str, cwd: Path, *, timeout: float = 120, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script file in ``cwd`` with this interpreter, in a fresh process
    (``args`` go to the interpreter before the script: ``("-m", "pytest")`` runs it as a
    test module)."""
    script = cwd / ("test_block.py" if args else "block.py")
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    return subprocess.run(
        [sys.executable, *args, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )
