"""The operator CLI on a real (SQLite) store: script-friendly JSON, clear errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "channelsync.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_holds_and_ops_answer_json_on_an_empty_store(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    status = json.loads(run(tmp_path, "status", "--json").stdout)
    assert status["open_holds"] == 0 and status["ops"] == [] and status["lines_by_status"] == {}
    assert json.loads(run(tmp_path, "holds", "list", "--json").stdout) == []
    assert json.loads(run(tmp_path, "ops", "list", "--state", "failed", "--json").stdout) == []
    assert json.loads(run(tmp_path, "replay", "outbound", "--json").stdout) == {}
    human = run(tmp_path, "status")
    assert "open holds: 0" in human.stdout


def test_clear_errors_on_bad_input(tmp_path: Path) -> None:
    unknown = run(tmp_path, "holds", "release", "NO-SUCH-ORDER", "--by", "kim")
    assert (
        unknown.returncode == 2
        and "not found" in unknown.stderr
        and "Traceback" not in unknown.stderr
    )
    naive = run(
        tmp_path, "replay", "ingest", "--channel", "naverpay", "--since", "2026-11-22T00:00"
    )
    assert naive.returncode == 2 and "zone" in naive.stderr
    bad_db = subprocess.run(
        [sys.executable, "-m", "channelsync.cli", "status"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "mysql://x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_db.returncode == 2 and "DATABASE_URL" in bad_db.stderr


def test_schema_command_writes_every_model(tmp_path: Path) -> None:
    out = run(
        tmp_path, "schema", "--out", str(tmp_path / "s"), "--markdown", str(tmp_path / "events.md")
    )
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert "Envelope.json" in files and "ShipmentRegistered.json" in files and len(files) >= 15
    assert (tmp_path / "events.md").read_text() == (ROOT / "docs" / "events.md").read_text()
