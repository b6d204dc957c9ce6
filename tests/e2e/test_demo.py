"""The README's main-job command: `channelsync demo` runs the scripted day and exits 0 only when
the store and the sandboxes' ledgers agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_day_ends_with_store_and_ledgers_agreeing() -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "channelsync.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "store and marketplace ledgers agree: YES" in out
    for rule in ("R06", "R12", "R13", "R15", "R25", "S1", "S4"):
        assert rule in out, rule
