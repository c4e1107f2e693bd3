"""The documentation site builds in strict mode, and its examples run.

How the examples in ``docs/**/*.md`` are tested (the convention, also in CONTRIBUTING.md):

- Every fenced ```` ```python ```` block is a complete program: it runs as a script in a
  fresh interpreter, in a temporary directory, and must exit 0 within the timeout.
- An HTML comment on the line right before the fence changes that:

  - ``<!-- docs-test: skip -->``: a fragment (it uses names it does not define, or needs
    a service the page only talks about); it is not run.
  - ``<!-- docs-test: pytest -->``: a test module; it runs under ``python -m pytest``.
  - ``<!-- docs-test: output -->`` before a ```` ```text ```` block: the block is what the
    python block before it prints, line for line (``...`` in a line matches anything).
  - ``<!-- docs-test: needs WFE_TEST_POSTGRES_URL -->`` (or ``WFE_TEST_REDIS_URL``): the
    block uses that service through the variable; it is skipped where the variable is
    not set (and, as every skip, fails the run in CI).

- Pages that teach by example (``PAGES_WITH_EXAMPLES``) must keep at least one runnable
  block, and the site as a whole at least ``MIN_RUNNABLE`` of them.

The build runs ``mkdocs build --strict`` (as ``.ci/run`` does), so a broken link, a missing
anchor or an API reference to a name that does not exist fails it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from code_blocks import CodeBlock, code_blocks, run_python
from wfe_core.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKERS = {"skip", "pytest", "output", "needs WFE_TEST_POSTGRES_URL", "needs WFE_TEST_REDIS_URL"}
MIN_RUNNABLE = 25
PAGES_WITH_EXAMPLES = {
    "index.md",
    "getting-started.md",
    "concepts/instances.md",
    "concepts/events.md",
    "concepts/durability.md",
    "how-to/event-driven.md",
    "how-to/activities.md",
    "how-to/user-tasks.md",
    "how-to/definitions.md",
    "how-to/sagas.md",
    "how-to/schedules.md",
    "how-to/timeouts-retries.md",
    "how-to/idempotency.md",
    "how-to/namespaces.md",
    "how-to/middleware.md",
    "how-to/testing.md",
    "how-to/providers.md",
    "how-to/sqlite.md",
    "how-to/postgres.md",
    "how-to/redis.md",
    "how-to/observability.md",
}


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _blocks() -> list[CodeBlock]:
    return [b for page in _pages() for b in code_blocks(page) if b.language in ("python", "text")]


def _runnable() -> list[tuple[CodeBlock, CodeBlock | None]]:
    """Each python block to run, with the ``output`` block that follows it (if any)."""
    found: list[tuple[CodeBlock, CodeBlock | None]] = []
    for block in _blocks():
        if block.language == "python" and block.marker != "skip":
            found.append((block, None))
        elif block.marker == "output":
            assert found, f"{block.where}: an output block before any python block"
            assert found[-1][0].path == block.path, f"{block.where}: output of what?"
            found[-1] = (found[-1][0], block)
    return found


RUNNABLE = _runnable()


def _page(block: CodeBlock) -> str:
    return block.path.relative_to(DOCS).as_posix()


def _matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


@pytest.mark.parametrize(
    ("block", "output"), RUNNABLE, ids=[f"{_page(b)}:{b.line}" for b, _ in RUNNABLE]
)
def test_example_runs(block: CodeBlock, output: CodeBlock | None, tmp_path: Path) -> None:
    if block.marker and block.marker.startswith("needs "):
        variable = block.marker.removeprefix("needs ")
        if not os.environ.get(variable):
            pytest.skip(f"{variable} is not set: the example needs that service")
    args = ("-m", "pytest", "-q", "-p", "no:cacheprovider") if block.marker == "pytest" else ()
    done = run_python(block.code, tmp_path, args=args)
    assert done.returncode == 0, f"{_page(block)}:{block.line} failed:\n{done.stdout}{done.stderr}"
    if output is not None:
        expected = [line.rstrip() for line in output.code.rstrip("\n").splitlines()]
        actual = [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]
        said = f"{_page(block)}:{block.line} printed:\n{done.stdout}\nthe page says:\n{output.code}"
        assert len(actual) == len(expected), said
        assert all(_matches(e, a) for e, a in zip(expected, actual, strict=True)), said


def test_markers_are_known() -> None:
    unknown = [
        f"{_page(b)}:{b.line} {b.marker!r}"
        for b in _blocks()
        if b.marker and b.marker not in MARKERS
    ]
    assert not unknown, f"unknown docs-test markers (known: {sorted(MARKERS)})"


def test_pages_keep_their_examples() -> None:
    pages = {_page(b) for b, _ in RUNNABLE}
    assert not PAGES_WITH_EXAMPLES - pages, "pages without a runnable example"
    assert len(RUNNABLE) >= MIN_RUNNABLE, f"only {len(RUNNABLE)} runnable examples"


@pytest.mark.slow
def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", tmp_path],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "WARNING" not in log, log
    assert (tmp_path / "reference" / "wfe_core" / "index.html").is_file()


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(path, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
        else:
            found.append((f"{path} {name}", command))
    return found


def test_cli_page_documents_every_command_and_option() -> None:
    """docs/cli.md has a section per command (a heading `wfe ...`) naming each option."""
    text = (DOCS / "cli.md").read_text()
    sections = dict(re.findall(r"^#{2,3} `(wfe[^`]*)`\n(.*?)(?=^#{2,3} |\Z)", text, re.S | re.M))
    missing = []
    for path, command in _commands(cli, "wfe"):
        if path not in sections:
            missing.append(f"no section for `{path}`")
            continue
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in [*param.opts, *param.secondary_opts]:
                    if opt.startswith("--") and not re.search(
                        rf"`{re.escape(opt)}[`\s]", sections[path]
                    ):
                        missing.append(f"`{path}` does not name `{opt}`")
    assert not missing, "docs/cli.md is stale:\n" + "\n".join(missing)


def test_screenshots_are_the_dashboards() -> None:
    """docs/assets/screenshots are copies of the dashboard test's screenshots: the same
    files, byte for byte (copy them again when the browser test retakes them)."""
    taken = ROOT / "wfe_dashboard" / "docs" / "screenshots"
    copied = DOCS / "assets" / "screenshots"
    names = sorted(p.name for p in taken.glob("*.png"))
    assert names, "the dashboard has no screenshots"
    assert sorted(p.name for p in copied.glob("*.png")) == names
    stale = [n for n in names if (taken / n).read_bytes() != (copied / n).read_bytes()]
    assert not stale, f"copy {stale} from {taken} to {copied}"


def test_api_reference_turns_rst_roles_into_code() -> None:
    """The griffe extension of the API reference rewrites reST habits as Markdown."""
    spec = importlib.util.spec_from_file_location(
        "rst_roles", DOCS / "_extensions" / "rst_roles.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "A :class:`~wfe_core.host.WorkflowHost` and :meth:`Clock.sleep`::\n\n    x = 1\n"
    assert module.markdown(text) == "A `WorkflowHost` and `Clock.sleep`:\n\n    x = 1\n"
    assert module.markdown("For example ::\n\n    x\n") == "For example\n\n    x\n"
    assert module.markdown("::\n\n    x\n") == "\n\n    x\n"
