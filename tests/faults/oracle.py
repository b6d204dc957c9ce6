"""The fault tests' oracle: what the marketplaces saw, compared with what the store says.

:class:`DispatchOracle` counts dispatch requests per unit inside the sandboxes' business logic;
:func:`check_exactly_once` is the S1 invariant; :func:`outcomes_summary` classifies answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.domain import LineStatus
from store.ledger import OpState
from store.models import ChannelOp
from tests.faults.seeding import Seeded


class DispatchOracle:
    """Counts every dispatch request that reached a sandbox's business logic, per unit (Naver
    product order / Qoo10 order number) — including ones the marketplace refuses or ignores (a
    repeated Naver dispatch is refused, a repeated Qoo10 one answers OK without a new ledger
    entry), so a second call cannot hide behind the marketplace's own idempotency."""

    def __init__(self) -> None:
        self.attempts: Counter[tuple[str, str]] = Counter()

    def watch_naver(self, sb: NaverPaySandbox) -> None:
        desk = sb.desk
        original = desk.dispatch

        def dispatch(item: dict[str, Any], *, source: str = "api") -> None:
            if source == "api":
                self.attempts[("naverpay", str(item.get("productOrderId", "")))] += 1
            original(item, source=source)

        desk.dispatch = dispatch  # type: ignore[method-assign]

    def watch_qoo10(self, sb: Qoo10Sandbox) -> None:
        world = sb.world
        original = world.send

        def send(order_no: str, corp: str, tracking: str) -> Any:
            self.attempts[("qoo10", order_no)] += 1
            return original(order_no, corp, tracking)

        world.send = send  # type: ignore[method-assign]


def check_exactly_once(
    orders: list[Seeded],
    lines: dict[str, str],
    ops: list[ChannelOp],
    naver: NaverPaySandbox,
    qoo10: Qoo10Sandbox,
    oracle: DispatchOracle,
) -> dict[str, int]:
    """S1 against the marketplaces: every seeded unit reached each marketplace's dispatch
    exactly once (oracle and ledger), its store line is SHIPPING ⇔ the marketplace shows it
    dispatched, and its ledger op succeeded. ``lines``: line id → status in the store; ``ops``:
    every ledger op. Returns the counts (raises AssertionError)."""
    counts: Counter[str] = Counter()
    problems: list[str] = []
    for o in orders:
        sb = naver if o.channel == "naverpay" else qoo10
        ledger_n = sb.ledger.count("dispatch", o.unit_id)
        attempts = oracle.attempts[(o.channel, o.unit_id)]
        if o.channel == "naverpay":
            detail = naver.detail(o.unit_id) or {}
            shipped_there = _naver_status(detail) == "DELIVERING"
        else:
            shipped_there = qoo10.order(o.unit_id).shipped_at is not None
        shipped_here = lines.get(o.line_id) == LineStatus.SHIPPING.value
        counts[f"ledger_dispatch=={ledger_n}"] += 1
        counts[f"attempts=={attempts}"] += 1
        if ledger_n != 1 or attempts != 1:
            problems.append(f"{o.channel} {o.unit_id}: ledger {ledger_n}, attempts {attempts}")
        if shipped_here != shipped_there:
            problems.append(
                f"{o.line_id}: store SHIPPING={shipped_here}, marketplace={shipped_there}"
            )
        counts["store_and_marketplace_agree"] += shipped_here == shipped_there
    keys = Counter(op.idempotency_key for op in ops)
    counts["ops"] = len(ops)
    counts["ops_succeeded"] = sum(op.state == OpState.SUCCEEDED for op in ops)
    counts["op_keys_duplicated"] = sum(1 for n in keys.values() if n > 1)
    counts["op_sent_more_than_once"] = sum(op.attempts > 1 for op in ops)
    units = Counter((op.channel, op.unit_id) for op in ops if op.action == "dispatch")
    counts["units_with_two_dispatch_ops"] = sum(1 for n in units.values() if n > 1)
    if counts["ops_succeeded"] != len(orders) or len(ops) != len(orders):
        problems.append(f"ops by state {Counter(op.state for op in ops)} for {len(orders)} units")
    if counts["units_with_two_dispatch_ops"]:
        problems.append("a unit has two dispatch ops")
    assert not problems, f"{len(problems)} violation(s): {problems[:20]}"
    return dict(counts)


def _naver_status(detail: dict[str, Any]) -> str:
    po = detail.get("productOrder") or detail
    return str(po.get("productOrderStatus", ""))


def outcomes_summary(results: dict[str, list[str]], event_ids: Iterable[str]) -> Counter[str]:
    """How the given commands were answered: final outcome classes counted once per command."""
    summary: Counter[str] = Counter()
    for eid in event_ids:
        seen = results.get(eid, [])
        if "succeeded" in seen:
            summary["succeeded"] += 1
        elif "duplicate" in seen:
            summary["duplicate_only"] += 1
        elif seen:
            summary["other:" + ",".join(sorted(set(seen)))] += 1
        else:
            summary["no_result"] += 1
        summary["results_total"] += len(seen)
    return summary
