"""Ingestion benchmarks against the Naver Pay sandbox, one worker, embedded broker, PostgreSQL.

* rate-limit bound: N dispatches with the sandbox enforcing its per-endpoint quota (2 req/s,
  burst 4) and the client limited to the same; achieved dispatches/s against the ideal
  (limit × 30 product orders per call), and the 429s our own bursts caused;
* collection delay: new paid orders injected at a steady rate with a random visibility lag;
  change time → stored (p50/p99) against the poll interval;
* catch-up: a backlog of N orders paid over the last 24 hours, found by a worker that starts
  after the "outage"; time until every one is stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.harness import Env, Worker, insert_orders, produce, quantiles
from connectors.naverpay.sandbox import NaverPaySandbox
from store.domain import Channel
from store.models import ChannelChangeRow, ChannelOp
from topics import names
from topics.commands import PickupReached
from topics.envelope import new_envelope
from topics.registry import encode

NAVER_RATE = 2.0
NAVER_BATCH = 30


async def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.5)
    return False


async def rate_limit(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    env = Env(bootstrap)
    engine = await env.engine()
    sb = NaverPaySandbox(visibility_lag=0.0, rates=None, seed=3)  # documented limits
    url = await sb.start()
    rows = []
    for i in range(n):
        c = sb.new_paid_order([{"name": "B", "quantity": 1}], lag=0)
        po, oid = c["productOrderIds"][0], f"naverpay:{c['orderId']}"
        rows.append(
            {
                "order_id": oid,
                "channel": "naverpay",
                "channel_order_id": c["orderId"],
                "line_id": f"{oid}:{po}",
                "unit_id": po,
                "carrier": "CJ",
                "number": f"{600000000000 + i}",
            }
        )
    await insert_orders(engine, rows)
    worker = Worker(
        env.worker_env(
            {"naverpay": url},
            NAVERPAY_RATE_PER_SECOND=str(NAVER_RATE),
            POLL_INTERVAL_SECONDS="3600",
        ),
        workdir / f"ratelimit-{n}.log",
    )
    await worker.start()
    try:
        sb.quota.rejected.clear()
        now = datetime.now(UTC)
        msgs = [
            (
                r["order_id"].encode(),
                encode(
                    new_envelope(
                        "pickup.reached",
                        r["order_id"],
                        Channel.NAVERPAY,
                        PickupReached(line_ids=[r["line_id"]], scanned_at=now),
                    )
                ),
            )
            for r in rows
        ]
        started = time.monotonic()
        await produce(bootstrap, env.prefix + names.OMS_COMMANDS, msgs)

        async def done() -> bool:
            return sb.ledger.count("dispatch") >= n

        finished = await _wait(done, timeout=n / 10 + 120)
        elapsed = time.monotonic() - started
        rate = sb.ledger.count("dispatch") / elapsed
        ideal = NAVER_RATE * NAVER_BATCH
        return {
            "n": n,
            "completed": finished,
            "seconds": round(elapsed, 2),
            "dispatches_per_second": round(rate, 2),
            "ideal_per_second": ideal,
            "ratio_to_ideal": round(rate / ideal, 3),
            "dispatch_calls": sb.requests.get("dispatch", 0),
            "http_429_answers": dict(sb.quota.rejected),
            "dispatched_twice": sum(
                1 for (op, _), k in sb.ledger.counts.items() if op == "dispatch" and k > 1
            ),
        }
    finally:
        worker.stop()
        await sb.stop()
        await engine.dispose()
        await env.drop()


async def collection(
    bootstrap: str,
    n: int,
    workdir: Path,
    *,
    rate: float = 5.0,
    poll: float = 10.0,
    max_lag: float = 10.0,
) -> dict[str, Any]:
    env = Env(bootstrap)
    engine = await env.engine()
    rng = random.Random(n)
    sb = NaverPaySandbox(visibility_lag=lambda: rng.uniform(0, max_lag), rates={}, seed=4)
    url = await sb.start()
    worker = Worker(
        env.worker_env(
            {"naverpay": url}, NAVERPAY_RATE_PER_SECOND="100000", POLL_INTERVAL_SECONDS=str(poll)
        ),
        workdir / f"collection-{n}.log",
    )
    await worker.start()
    try:
        for _ in range(n):
            sb.new_paid_order([{"name": "C", "quantity": 1}])
            await asyncio.sleep(1 / rate)

        async def stored() -> bool:
            async with engine.connect() as conn:
                count = await conn.scalar(
                    select(func.count())
                    .select_from(ChannelChangeRow)
                    .where(ChannelChangeRow.applied_at.is_not(None))
                )
            return (count or 0) >= n

        finished = await _wait(stored, timeout=poll * 3 + max_lag + 120)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(ChannelChangeRow.changed_at, ChannelChangeRow.applied_at).where(
                        ChannelChangeRow.applied_at.is_not(None)
                    )
                )
            ).all()
        delays = [(a - c).total_seconds() for c, a in rows]
        q = quantiles(delays)
        return {
            "n": n,
            "completed": finished,
            "inject_rate_per_second": rate,
            "poll_interval_seconds": poll,
            "max_visibility_lag_seconds": max_lag,
            "change_to_stored_seconds": q,
            "target_p99_seconds": poll + 30,
            "meets_target": q["p99"] <= poll + 30,
        }
    finally:
        worker.stop()
        await sb.stop()
        await engine.dispose()
        await env.drop()


async def catch_up(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    env = Env(bootstrap)
    engine = await env.engine()
    sb = NaverPaySandbox(visibility_lag=0.0, rates={}, seed=5)
    url = await sb.start()
    start = (
        datetime.now(UTC) - timedelta(hours=24) + timedelta(minutes=5)
    )  # inside the first-start lookback
    for i in range(n):
        sb.new_paid_order(
            [{"name": "D", "quantity": 1}], at=start + timedelta(seconds=i * 86_000 / n), lag=0
        )
    worker = Worker(
        env.worker_env(
            {"naverpay": url}, NAVERPAY_RATE_PER_SECOND="100000", POLL_INTERVAL_SECONDS="2"
        ),
        workdir / f"catchup-{n}.log",
    )
    began = time.monotonic()
    await worker.start()
    try:

        async def stored() -> bool:
            async with engine.connect() as conn:
                count = await conn.scalar(
                    select(func.count())
                    .select_from(ChannelChangeRow)
                    .where(ChannelChangeRow.applied_at.is_not(None))
                )
            return (count or 0) >= n

        finished = await _wait(stored, timeout=max(300, n / 10))
        elapsed = time.monotonic() - began
        calls = dict(sb.requests)
        pages, details, ids = (
            calls.get("last_changed", 0),
            calls.get("query", 0),
            calls.get("product_order_ids", 0),
        )
        return {
            "n": n,
            "completed": finished,
            "seconds_to_caught_up": round(elapsed, 1),
            "changes_per_second": round(n / elapsed, 1),
            "api_calls": calls,
            "quota_bound_ideal_seconds_at_2_per_s": round(max(pages, details, ids) / NAVER_RATE, 1),
            "note": "the sandbox ran unlimited here; the ideal is the busiest endpoint's calls at 2 req/s",
            "ops_created": await _count(engine, ChannelOp),
        }
    finally:
        worker.stop()
        await sb.stop()
        await engine.dispose()
        await env.drop()


async def _count(engine: Any, model: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(model)) or 0)
