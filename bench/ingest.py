"""Ingestion benchmarks against the Naver Pay sandbox, one worker, embedded broker, PostgreSQL.

* rate-limit bound: N dispatches with the sandbox enforcing its per-endpoint quota (2 req/s,
  burst 4) and the client limited to the same; achieved dispatches/s against the ideal
  (limit × 30 product orders per call), and the 429s our own bursts caused;
* collection delay: new paid orders injected at a steady rate with a random visibility lag;
  change time → stored (p50/p99) against the poll interval;
* catch-up: a backlog of N orders paid over the last 24 hours, found by a worker that starts
  after the "outage"; time until every one is stored, once with the sandbox enforcing its
  documented quotas (client at 2 req/s; API calls needed per endpoint, quota-bound ideal =
  busiest endpoint's calls / 2 req/s, ratio, 429s) and once unlimited (CPU-bound figure).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.harness import Env, Worker, insert_orders, naver_order_row, produce, quantiles
from connectors.naverpay.sandbox import NaverPaySandbox
from store.domain import Channel
from store.models import ChannelChangeRow, ChannelOp, IngestCursor
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
        await asyncio.sleep(0.05)  # fine enough not to blur a few-second measurement
    return False


async def rate_limit(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    env = Env(bootstrap)
    engine = await env.engine()
    sb = NaverPaySandbox(visibility_lag=0.0, rates=None, seed=3)  # documented limits
    url = await sb.start()
    rows = []
    for i in range(n):
        rows.append(naver_order_row(sb, f"{600000000000 + i}"))
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


class _LoggingSandbox(NaverPaySandbox):
    """The sandbox plus a log of every API answer it produced: (monotonic time, endpoint)."""

    def __init__(self, **kw: Any) -> None:
        self.answers: list[tuple[float, str]] = []
        super().__init__(**kw)

    def api(self, handler: Any) -> Any:
        inner = super().api(handler)

        async def logged(request: Any) -> Any:
            response = await inner(request)
            endpoint = self._endpoint_of.get(request.match_info.route.resource.canonical, "?")
            self.answers.append((time.monotonic(), endpoint))
            return response

        return logged


def _backlog_times(n: int, now: datetime) -> list[datetime]:
    """n pay times spread over the 24 h before ``now`` (inside the first-start lookback)."""
    start = now - timedelta(hours=24) + timedelta(minutes=5)
    return [start + timedelta(seconds=i * 86_000 / n) for i in range(n)]


async def catch_up(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    """Both modes at size n: quotas on (the headline) and unlimited (the CPU-bound figure)."""
    quotas = await catch_up_once(bootstrap, n, workdir, quotas=True)
    unlimited = await catch_up_once(bootstrap, n, workdir, quotas=False)
    return {**quotas, "unlimited": unlimited}


async def catch_up_once(bootstrap: str, n: int, workdir: Path, *, quotas: bool) -> dict[str, Any]:
    """A backlog of n single-line orders paid over the last 24 h, found by a worker started
    after the "outage"; time until every ORDER_PAID is stored.

    ``quotas``: the sandbox enforces its documented per-endpoint limits (2 req/s, burst 4) and
    the client runs at NAVERPAY_RATE_PER_SECOND=2; otherwise both are unlimited. The calls
    *needed* are those answered before the catch-up poll committed its cursor (later polls
    are the steady-state overlap re-reads); the quota-bound ideal is the busiest endpoint's
    needed calls at 2 req/s, and the ratios are measured from the worker being ready."""
    env = Env(bootstrap)
    engine = await env.engine()
    sb = _LoggingSandbox(visibility_lag=0.0, rates=None if quotas else {}, seed=5)
    url = await sb.start()
    times = _backlog_times(n, datetime.now(UTC))
    for paid_at in times:
        sb.new_paid_order([{"name": "D", "quantity": 1}], at=paid_at, lag=0)
    worker = Worker(
        env.worker_env(
            {"naverpay": url},
            NAVERPAY_RATE_PER_SECOND=str(NAVER_RATE) if quotas else "100000",
            POLL_INTERVAL_SECONDS="2",
        ),
        workdir / f"catchup-{'quotas' if quotas else 'unlimited'}-{n}.log",
    )
    began = time.monotonic()
    await worker.start()
    ready = time.monotonic()
    marks: dict[str, float] = {}
    try:

        async def stored() -> bool:
            async with engine.connect() as conn:
                if "cursor" not in marks:
                    cursor = await conn.scalar(
                        select(IngestCursor.cursor).where(IngestCursor.channel == "naverpay")
                    )
                    if cursor is not None and cursor > times[-1]:
                        marks["cursor"] = time.monotonic()
                count = await conn.scalar(
                    select(func.count())
                    .select_from(ChannelChangeRow)
                    .where(ChannelChangeRow.applied_at.is_not(None))
                )
            return (count or 0) >= n

        finished = await _wait(stored, timeout=max(300, n / 10))
        done = time.monotonic()
        cursor_at = marks.get("cursor", done)
        needed: Counter[str] = Counter()
        last_needed = ready
        for answered, endpoint in sb.answers:
            if answered <= cursor_at:
                needed[endpoint] += 1
                last_needed = max(last_needed, answered)
        busiest = max(needed.values(), default=0)
        ideal = busiest / NAVER_RATE
        pages = math.ceil(n / 300)
        caught_up = done - ready
        return {
            "n": n,
            "mode": "quotas" if quotas else "unlimited",
            "completed": finished,
            "seconds_to_caught_up": round(caught_up, 1),
            "seconds_incl_worker_start": round(done - began, 1),
            "changes_per_second": round(n / caught_up, 1),
            "seconds_reading_api": round(last_needed - ready, 1),
            "seconds_to_cursor_committed": round(cursor_at - ready, 1),
            "api_calls_needed": dict(needed),
            "api_calls_total": dict(sb.requests),
            "busiest_endpoint_calls": busiest,
            "quota_bound_ideal_seconds_at_2_per_s": round(ideal, 1),
            "ratio_to_ideal": round(caught_up / ideal, 2) if ideal else None,
            "api_ratio_to_ideal": round((last_needed - ready) / ideal, 2) if ideal else None,
            "lower_bound_seconds_at_2_per_s": round(pages / NAVER_RATE, 1),
            "http_429_answers": sum(sb.quota.rejected.values()),
            "http_429_by_endpoint": dict(sb.quota.rejected),
            "client_rate_per_second": NAVER_RATE if quotas else None,
            "sandbox_limits": "2 req/s, burst 4 per endpoint" if quotas else "none",
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
