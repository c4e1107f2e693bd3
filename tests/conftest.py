"""Fixtures of the cross-package tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from worker_process import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Workers a test started (append them); killed at the end of the test."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()
