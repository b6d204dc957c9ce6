"""S4 for the store: the machine's PostgreSQL is restarted twice while ~2,000 dispatch commands
flow (a fast ``restart``, then a ``stop`` held for a few seconds before ``start``). The worker
survives (infrastructure errors retry the same message / dispatcher round in place) and finishes
exactly once. PostgreSQL is brought back up in a ``finally`` even if the test fails.

Caution: this restarts the PostgreSQL server at 127.0.0.1:5432 for everyone using it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.stack import FaultStack, outcomes_summary

pytestmark = [pytest.mark.slow, pytest.mark.integration]

N_ORDERS = 2000
DOWN_SECONDS = 5.0


def _cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        pytest.skip("no local PostgreSQL cluster to restart (/etc/postgresql)")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg(action: str) -> float:
    started = time.monotonic()
    subprocess.run([*_cluster(), action], check=True, capture_output=True, timeout=120)
    return time.monotonic() - started


def _pg_online() -> bool:
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    return " online " in out.stdout


@pytest.fixture
def postgres_comes_back() -> Iterator[None]:
    _cluster()
    try:
        yield
    finally:
        if not _pg_online():
            _pg("start")


@pytest.fixture
async def stack(
    kafka_bootstrap: str, require_pg: str, tmp_path: Path, postgres_comes_back: None
) -> AsyncIterator[FaultStack]:
    st = FaultStack(kafka_bootstrap, require_pg, tmp_path, rng_seed=31)
    await st.start()
    try:
        yield st
    finally:
        if not _pg_online():
            _pg("start")
        await st.stop()


async def test_s4_worker_survives_postgres_restarts_and_dispatches_exactly_once(
    stack: FaultStack, report: Callable[..., Any]
) -> None:
    """S4/S1: while the store is down the commands agent retries the same message in place and
    the dispatcher retries its round; nothing is acked before its effect is committed, so after
    the restarts every command is applied once and every unit dispatched once, and the worker
    process never exited."""
    started = time.monotonic()
    orders = await stack.seed_orders(N_ORDERS)
    commands = [stack.command_for(o) for o in orders]
    pid = stack.worker.proc.pid if stack.worker.proc else None

    async def feed() -> None:
        for i in range(0, len(commands), 100):
            await stack.send_commands(commands[i : i + 100])
            await asyncio.sleep(1.0)

    feeder = asyncio.create_task(feed())
    await asyncio.sleep(4.0)
    restart_took = await asyncio.to_thread(_pg, "restart")
    await asyncio.sleep(6.0)
    await asyncio.to_thread(_pg, "stop")
    await asyncio.sleep(DOWN_SECONDS)
    start_took = await asyncio.to_thread(_pg, "start")
    await feeder
    settle = await stack.wait_shipped(N_ORDERS, timeout=240)

    assert stack.worker.proc is not None and stack.worker.proc.poll() is None, "worker exited"
    assert stack.worker.proc.pid == pid and len(stack.workers) == 1
    invariants = await stack.check_exactly_once(orders)
    results = await stack.results_by_event()
    answered = outcomes_summary(results, [str(c.event_id) for c in commands])
    assert answered["succeeded"] == len(commands), answered
    dead = await stack.dead_letters()
    assert all(not v for v in dead.values()), {k: len(v) for k, v in dead.items()}
    log = stack.worker.log_path.read_text(errors="replace")
    infra_retries = log.count("infrastructure failure") + log.count("failed (attempt")
    round_failures = log.count("dispatcher round failed")
    assert infra_retries + round_failures > 0, "the restarts were not noticed"
    leaks = await stack.scan_secrets()
    report(
        commands=len(commands),
        postgres_restart_seconds=round(restart_took, 1),
        postgres_down_seconds=DOWN_SECONDS,
        postgres_start_seconds=round(start_took, 1),
        settle_after_last_start_seconds=round(settle, 1),
        infra_retries_logged=infra_retries,
        dispatcher_rounds_failed=round_failures,
        invariants=invariants,
        commands_answered=dict(answered),
        dead_letters=0,
        secrets_scanned_bytes=sum(leaks.values()),
        wall_seconds=round(time.monotonic() - started, 1),
    )
