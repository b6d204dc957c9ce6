"""Fixtures of the fault tests (``make faults``): PostgreSQL is required, each test gets its own
schema, topic prefix, sandboxes and worker(s) through :class:`tests.faults.stack.FaultStack`.

Every test records its figures with the ``report`` fixture; they are printed at the end of the
session and, when ``FAULTS_REPORT`` names a file, appended to it as JSON lines (bench/faults.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, PG_URL, _pg_reachable

_FIGURES: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def require_pg() -> str:
    if not _pg_reachable():
        if IN_CI:
            pytest.fail("PostgreSQL not reachable (CI must test it)")
        pytest.skip("PostgreSQL not reachable")
    return PG_URL


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """``report(**figures)`` records figures of the running test (merged, JSON-serialisable)."""
    figures: dict[str, Any] = {"test": request.node.name}
    started = time.monotonic()

    def record(**kw: Any) -> None:
        figures.update(kw)

    yield record
    figures.setdefault("wall_seconds", round(time.monotonic() - started, 1))
    _FIGURES.append(figures)
    target = os.environ.get("FAULTS_REPORT")
    if target:
        with Path(target).open("a") as f:
            f.write(json.dumps(figures, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault test figures")
    for figures in _FIGURES:
        terminalreporter.write_line(json.dumps(figures, default=str))
