"""Turn OMS commands into ledger ops (the intent half of every external call).

``plan_*`` functions check the rules, then add ops to the ledger inside the caller's transaction.
They never call a marketplace: :mod:`agents.dispatcher` executes the ops afterwards. Keys:

* dispatch: ``dispatch:<channel>:<unit>:<tracking number>`` — a unit is dispatched once per
  invoice whatever event asked for it (shipment, pickup command, tracking scan, replay), and a
  corrected invoice after a marketplace refusal (R18) gets a new op;
* everything else: ``<event id>:<action>`` — once per source event (S1).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import batch_cache, ledger, repo
from store.domain import Channel, LineStatus
from store.errors import RuleViolation
from store.ledger import OpState
from store.models import ChannelOp, Invoice, Order, OrderLine
from store.state_machine import check_cancel, check_return

#: Actions the dispatcher knows how to execute.
DISPATCH = "dispatch"
DELAY = "delay_dispatch"
CANCEL = "cancel"
APPROVE_CANCEL = "approve_cancel"
REJECT_CANCEL = "reject_cancel"
RETURN_HOLD = "return_hold"
RETURN_HOLD_RELEASE = "return_hold_release"
RETURN_APPROVE = "return_approve"
BUYER_MESSAGE = "buyer_message"
REQUEST_WAYBILL = "request_waybill"
CONFIRM = "confirm_orders"

ACTIONS = (
    DISPATCH,
    DELAY,
    CANCEL,
    APPROVE_CANCEL,
    REJECT_CANCEL,
    RETURN_HOLD,
    RETURN_HOLD_RELEASE,
    RETURN_APPROVE,
    BUYER_MESSAGE,
    REQUEST_WAYBILL,
    CONFIRM,
)


def is_channel_order(order: Order) -> bool:
    return Channel(order.channel) is not Channel.OMS


def _units(lines: Sequence[OrderLine]) -> list[str]:
    """The marketplace units behind ``lines`` (first-seen order, no repeats)."""
    seen: dict[str, None] = {}
    for line in lines:
        seen.setdefault(line.channel_unit_id or line.id, None)
    return list(seen)


async def _dispatched_units(
    session: AsyncSession, order_id: str, channel: str, units: Sequence[str]
) -> set[str]:
    """Units among ``units`` that already have an open or successful dispatch op."""
    if not units:
        return set()
    wanted = {s.value for s in ledger.OPEN_STATES | {OpState.SUCCEEDED}}
    cache = batch_cache.get(session)
    if cache is not None and order_id in cache.order_ids:
        return {
            op.unit_id
            for op in cache.ops_by_order.get(order_id, ())
            if op.unit_id is not None
            and op.unit_id in units
            and op.channel == channel
            and op.action == DISPATCH
            and op.state in wanted
        }
    stmt = select(ChannelOp.unit_id).where(
        ChannelOp.unit_id.in_(list(units)),
        ChannelOp.channel == channel,
        ChannelOp.action == DISPATCH,
        ChannelOp.state.in_(sorted(wanted)),
    )
    return {u for (u,) in (await session.execute(stmt)).all() if u}


async def plan_dispatch(
    session: AsyncSession,
    order: Order,
    lines: Sequence[OrderLine],
    source_event_id: str,
    dispatched_at: datetime,
    *,
    reason: str,
) -> list[ChannelOp]:
    """One dispatch op per marketplace unit of ``lines`` that has a valid invoice and no open
    or successful dispatch yet. R15: the op covers the whole unit, including sibling lines the
    OMS has not shipped; the collapse is recorded on the op (and on the lines when it succeeds).
    Held orders get PARKED ops (R12)."""
    invoices = {
        inv.line_id: inv
        for inv in await repo.active_invoices(session, [ln.id for ln in order.lines])
        if inv.valid and not inv.reprint_required  # R12: a waybill for the old address never ships
    }
    units = [
        u
        for u in _units(lines)
        if any((ln.channel_unit_id or ln.id) == u and ln.id in invoices for ln in lines)
    ]
    if not units:
        stale = await repo.active_invoices(session, [ln.id for ln in lines])
        if any(inv.reprint_required for inv in stale):
            raise RuleViolation(
                "R12", "the waybill was printed for the old address: reprint it before dispatch"
            )
    done = await _dispatched_units(session, order.id, order.channel, units)
    ops: list[ChannelOp] = []
    for unit in units:
        if unit in done:
            continue
        unit_lines = [ln for ln in order.lines if (ln.channel_unit_id or ln.id) == unit]
        inv = next(invoices[ln.id] for ln in unit_lines if ln.id in invoices)
        shipped = {
            ln.id: (ln.shipped_quantity or ln.quantity) for ln in unit_lines if ln.id in invoices
        }
        channel_qty = sum(ln.quantity for ln in unit_lines)
        physical = sum(shipped.values())
        payload: dict[str, Any] = {
            "unit_id": unit,
            "line_ids": [ln.id for ln in unit_lines],
            "carrier": inv.carrier,
            "tracking_number": inv.tracking_number,
            "invoice_kind": inv.kind,
            "dispatched_at": dispatched_at.isoformat(),
            "reason": reason,
        }
        if physical < channel_qty or len(shipped) < len(unit_lines):
            payload["collapse"] = {  # R15
                "unit_id": unit,
                "shipped_quantity": physical,
                "channel_quantity": channel_qty,
            }
        key = f"dispatch:{order.channel}:{unit}:{inv.tracking_number}"
        state = OpState.PARKED if order.on_hold else OpState.PENDING
        op, created = await ledger.record_intent(
            session,
            key=key,
            order_id=order.id,
            channel=order.channel,
            action=DISPATCH,
            payload=payload,
            source_event_id=source_event_id,
            state=state,
            unit_id=unit,
        )
        if created:
            if state is OpState.PARKED:
                ledger.mark_parked(op, {"rule": "R12", "message": "order on delivery hold"})
            ops.append(op)
    return ops


async def plan_simple(
    session: AsyncSession,
    order: Order,
    action: str,
    payload: dict[str, Any],
    source_event_id: str,
) -> ChannelOp:
    """One op keyed by the source event (S1)."""
    op, _ = await ledger.record_intent(
        session,
        key=ledger.idempotency_key(source_event_id, action),
        order_id=order.id,
        channel=order.channel,
        action=action,
        payload=payload,
        source_event_id=source_event_id,
    )
    return op


async def plan_cancel(
    session: AsyncSession,
    order: Order,
    lines: Sequence[OrderLine],
    reason: str,
    buyer_message: str | None,
    source_event_id: str,
) -> ChannelOp:
    """Seller cancel. R09 per line; R16 on Naver: a cancel covers whole units, so every line of
    a named unit is cancelled together (no partial cancel)."""
    view = await repo.order_view(session, order)
    views = {lv.line_id: lv for lv in view.lines}
    units = _units(lines)
    all_lines = [ln for ln in order.lines if (ln.channel_unit_id or ln.id) in units]
    for line in all_lines:
        check_cancel(view, views[line.id])
    payload = {
        "unit_ids": units,
        "line_ids": [ln.id for ln in all_lines],
        "reason": reason,
        "buyer_message": buyer_message,
    }
    return await plan_simple(session, order, CANCEL, payload, source_event_id)


async def plan_return_op(
    session: AsyncSession,
    order: Order,
    lines: Sequence[OrderLine],
    action: str,
    extra: dict[str, Any],
    source_event_id: str,
) -> ChannelOp:
    if Channel(order.channel) is not Channel.NAVERPAY and action != RETURN_APPROVE:
        raise RuleViolation("R14", f"return hold exists only on Naver Pay, not {order.channel}")
    view = await repo.order_view(session, order)
    views = {lv.line_id: lv for lv in view.lines}
    for line in lines:
        status = LineStatus(line.status)
        if status not in (LineStatus.RETURN_REQUESTED, LineStatus.RETURN_HELD):
            check_return(view, views[line.id])
    payload = {"unit_ids": _units(lines), "line_ids": [ln.id for ln in lines], **extra}
    return await plan_simple(session, order, action, payload, source_event_id)


async def unpark(session: AsyncSession, order_id: str, *, override_claim: bool = False) -> int:
    """Parked ops of the order go back to PENDING (hold released / operator decision).

    With ``override_claim`` the R29 check is skipped for the order's dispatches: the operator
    decided to refuse the cancel and ship."""
    ops = await ledger.parked_ops(session, order_id)
    order = await repo.get_order(session, order_id)
    reprint = {
        inv.tracking_number
        for inv in await repo.active_invoices(session, [ln.id for ln in order.lines])
        if inv.reprint_required
    }
    n = 0
    for op in ops:
        why = (op.last_error or {}).get("rule")
        if why == "R12" and order.on_hold:
            continue
        if op.action == DISPATCH and op.payload.get("tracking_number") in reprint:
            ledger.mark_cancelled(
                op,
                {
                    "rule": "R12",
                    "message": "waybill printed for the old address: reprint, then dispatch the new one",
                },
            )
            continue
        if why in ("R29", "R25") and not override_claim:
            continue
        if override_claim and op.action == DISPATCH:
            op.payload = {**op.payload, "override_claim": True}
        op.state = OpState.PENDING.value
        op.last_error = None
        n += 1
    return n


async def invoice_for(session: AsyncSession, carrier: str, number: str) -> list[Invoice]:
    stmt = select(Invoice).where(
        Invoice.carrier == carrier, Invoice.tracking_number == number, Invoice.deleted_at.is_(None)
    )
    return list((await session.execute(stmt)).scalars())
