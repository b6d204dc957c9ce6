"""The demo's closing summary: store vs marketplace ledgers, and the latencies it saw."""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from store import repo
from store.ledger import OpState
from store.models import ChannelChangeRow, ChannelOp, OrderLine


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": 0.0, "p99": 0.0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(values), "p50": statistics.median(ordered), "p99": p99}


async def latencies(engine: AsyncEngine) -> dict[str, dict[str, float]]:
    """Command → marketplace acknowledged (ledger op created → succeeded) and marketplace change
    → stored (change time → applied), in seconds."""
    async with async_sessionmaker(engine)() as s:
        ops = (
            await s.execute(select(ChannelOp).where(ChannelOp.state == OpState.SUCCEEDED.value))
        ).scalars()
        push = [(op.updated_at - op.created_at).total_seconds() for op in ops]
        rows = (
            await s.execute(
                select(ChannelChangeRow).where(ChannelChangeRow.applied_at.is_not(None))
            )
        ).scalars()
        collect = [(r.applied_at - r.changed_at).total_seconds() for r in rows if r.applied_at]
    return {"command_to_marketplace": _quantiles(push), "change_to_store": _quantiles(collect)}


async def agreement(demo: Any, expect: dict[str, str]) -> tuple[bool, dict[str, Any]]:
    problems: list[str] = []
    lines_out: list[dict[str, Any]] = []
    async with demo.sessions() as s:
        lines = list(
            (
                await s.execute(select(OrderLine).order_by(OrderLine.order_id, OrderLine.id))
            ).scalars()
        )
        holds = await repo.open_holds(s)
        failed = list(
            (
                await s.execute(select(ChannelOp).where(ChannelOp.state == OpState.FAILED.value))
            ).scalars()
        )
        ops = list((await s.execute(select(ChannelOp))).scalars())
    for line in lines:
        channel = line.order_id.split(":", 1)[0]
        unit = line.channel_unit_id or ""
        sb = {"naverpay": demo.naver, "qoo10": demo.qoo10}.get(channel)
        pushed = sb.ledger.count("dispatch", unit) if sb else 0
        elsewhere = sb.ledger.count("seller_centre_dispatch", unit) if sb else 0
        row = {
            "line": line.id,
            "status": line.status,
            "expected": expect.get(line.id, "-"),
            "dispatches_pushed": pushed,
            "collapse": line.collapse,
        }
        lines_out.append(row)
        if line.id in expect and expect[line.id] != line.status:
            problems.append(f"{line.id}: store {line.status}, expected {expect[line.id]}")
        if pushed > 1:
            problems.append(f"{line.id}: unit {unit} dispatched {pushed} times")
        if line.status == "SHIPPING" and pushed + elsewhere != 1:
            problems.append(
                f"{line.id}: SHIPPING in the store but {pushed + elsewhere} dispatches on {channel}"
            )
        if pushed and line.status not in ("SHIPPING", "DELIVERED", "PURCHASE_CONFIRMED"):
            problems.append(f"{line.id}: dispatched on {channel} but {line.status} in the store")
    if holds:
        problems.append(f"{len(holds)} order(s) still on hold")
    for op in failed:
        problems.append(f"op {op.idempotency_key} failed: {op.last_error}")
    report = {
        "lines": lines_out,
        "ops": {state.value: sum(1 for op in ops if op.state == state.value) for state in OpState},
        "naverpay": demo.naver.ledger.snapshot()["counts"],
        "qoo10": demo.qoo10.ledger.snapshot()["counts"],
        "goodsflow": demo.goodsflow.ledger.snapshot()["counts"],
        "problems": problems,
    }
    return not problems, report


def print_summary(report: dict[str, Any], lat: dict[str, dict[str, float]]) -> None:
    print("\n=== summary ===")
    print(f"{'line':<52} {'store':<17} {'expected':<12} pushed  collapse")
    for row in report["lines"]:
        collapse = row["collapse"] or ""
        print(
            f"{row['line']:<52} {row['status']:<17} {row['expected']:<12} {row['dispatches_pushed']:<7} {collapse}"
        )
    print("ledger ops: " + ", ".join(f"{k}={v}" for k, v in report["ops"].items() if v))
    for name in ("naverpay", "qoo10", "goodsflow"):
        counts = report[name]
        shown = {
            op: sum(keys.values())
            for op, keys in counts.items()
            if op not in ("token_issued", "key_issued")
        }
        print(f"{name} ledger: " + ", ".join(f"{op}={n}" for op, n in sorted(shown.items())))
    for name, q in lat.items():
        print(
            f"latency {name.replace('_', ' ')}: n={q['n']} median={q['p50']:.2f}s p99={q['p99']:.2f}s"
        )
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}")
