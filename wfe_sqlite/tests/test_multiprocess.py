"""Three worker processes share one SQLite file with no other service (issue: 300
event-driven workflows, every step exactly once, a worker killed mid-step)."""

from pathlib import Path

import pytest
from wfe_conformance.multihost import MultiHostTests


@pytest.mark.slow
class TestSqliteMultiHost(MultiHostTests):
    workers = 3
    workflows = 300

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'shared.db'}"
