"""Run the fault tests (``tests/faults``, marked slow) and print their figures as a table.

``python -m bench.faults [pytest args…]`` runs ``pytest -q -m slow tests/faults`` with
``FAULTS_REPORT`` pointing at a temporary JSON-lines file that every fault test appends its
figures to (tests/faults/conftest.py), then prints one row per test: messages, wall time and the
invariant counts. Exits with pytest's status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _messages(fig: dict[str, Any]) -> str:
    if "bad_messages" in fig and "valid_messages" in fig:
        valid = sum(fig["valid_messages"].values())
        return f"{valid} valid + {fig['bad_messages']} bad"
    for key in ("commands", "poison_messages"):
        if key in fig:
            return str(fig[key])
    return "?"


def _invariants(fig: dict[str, Any]) -> str:
    inv = fig.get("invariants") or {}
    if not inv:
        return ""
    keys = ("ledger_dispatch==1", "attempts==1", "store_and_marketplace_agree", "ops_succeeded")
    return ", ".join(f"{k} {inv.get(k, 0)}" for k in keys)


def table(figures: list[dict[str, Any]]) -> str:
    rows = ["| test | messages | wall s | invariants |", "| --- | --- | --- | --- |"]
    for fig in figures:
        rows.append(
            f"| {fig.get('test', '?')} | {_messages(fig)} | {fig.get('wall_seconds', '?')} "
            f"| {_invariants(fig)} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    with tempfile.NamedTemporaryFile(prefix="faults-", suffix=".jsonl", delete=False) as f:
        report = Path(f.name)
    env = {**os.environ, "FAULTS_REPORT": str(report)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "slow", "tests/faults", *argv]
    status = subprocess.call(cmd, cwd=ROOT, env=env)
    figures = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    report.unlink(missing_ok=True)
    print(table(figures))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
