"""End to end: the ledger executed by separate ``channelsync dispatcher`` processes.

The worker runs with ``DISPATCHER_MODE=off``; two dispatcher processes poll the same
PostgreSQL ledger at once. S1 across processes: every shipment is dispatched exactly once on
the marketplace (the sandbox's ledger), and the two processes' own metrics add up to one
success per op — an op is taken by exactly one of them (conditional UPDATE), never both.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bench.harness import insert_orders, naver_order_row
from channelsync.broker import free_port
from store.domain import Channel
from store.ledger import OpState
from store.models import ChannelOp
from tests.e2e.conftest import start_stack
from tests.e2e.stack import Stack
from tests.harness import WorkerProcess
from topics.commands import ShipmentRegistered
from topics.envelope import new_envelope

pytestmark = pytest.mark.integration

N = 240


@pytest.fixture(scope="module")
async def split(
    kafka_bootstrap: str, e2e_tmp: Path, require_pg: None
) -> AsyncIterator[tuple[Stack, list[int]]]:
    async for stack in start_stack(
        kafka_bootstrap,
        e2e_tmp,
        ("naverpay",),
        DISPATCHER_MODE="off",
        POLL_INTERVAL_SECONDS="3600",  # the test writes the orders itself
    ):
        ports = [free_port(), free_port()]
        procs = [
            WorkerProcess(
                {**stack.worker.env, "METRICS_PORT": str(port)},
                e2e_tmp / f"dispatcher-{i}.log",
                command="dispatcher",
            )
            for i, port in enumerate(ports)
        ]
        try:
            for proc in procs:
                proc.start()
            yield stack, ports
        finally:
            for proc in procs:
                proc.stop()


def _succeeded(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "channelsync_ops":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("outcome") == "succeeded":
                    total += sample.value
    return total


async def test_s1_two_dispatcher_processes_send_each_op_once(
    split: tuple[Stack, list[int]],
) -> None:
    stack, ports = split
    naver = stack.sandboxes["naverpay"]
    rows: list[dict[str, Any]] = []
    for i in range(N):
        rows.append(
            naver_order_row(
                naver, f"{610000000000 + i}", {"name": "B", "quantity": 1, "unit_price": 1000}
            )
        )
    await insert_orders(stack.engine, rows, invoices=False)
    await stack.send(
        *(
            new_envelope(
                "shipment.registered",
                r["order_id"],
                Channel.NAVERPAY,
                ShipmentRegistered(
                    line_ids=[r["line_id"]],
                    carrier="CJ",
                    tracking_number=r["number"],
                    dispatch_now=True,
                ),
            )
            for r in rows
        )
    )

    async def all_done() -> bool:
        async with stack.sessions() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(ChannelOp)
                .where(ChannelOp.state == OpState.SUCCEEDED.value)
            )
        return (n or 0) >= N

    await stack.wait_until(all_done, f"{N} dispatch ops succeeded", timeout=120)
    await asyncio.sleep(1.0)  # let any (wrong) second send land before counting
    units = {r["unit_id"] for r in rows}
    counts = {u: naver.ledger.counts.get(("dispatch", u), 0) for u in units}
    assert set(counts.values()) == {1}, {u: c for u, c in counts.items() if c != 1}
    shares = [_succeeded(p) for p in ports]
    assert sum(shares) == N, shares  # one success per op, across both processes
