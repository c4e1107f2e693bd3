"""The README's example runs as written."""

from __future__ import annotations

from pathlib import Path

from code_blocks import code_blocks, run_python

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks(ROOT / "README.md", "python")
    example = next(b.code for b in blocks if "asyncio.run(main())" in b.code)
    done = run_python(example, tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "A-1 shipped {'amount': '12.50'}" in done.stdout
    assert "A-2 cancelled None" in done.stdout
