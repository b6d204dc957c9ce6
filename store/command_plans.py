"""OMS commands that reach a marketplace: rule checks + ledger intents (no I/O beyond the store).

Each ``plan_*`` returns ``(Applied, ops)``; the command agent commits them together with the
processed-event marker, then the dispatcher executes the ops. Orders of the shop's own channel
(``oms``) have no marketplace: the same commands change the store directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger, repo
from store import outbound as ob
from store.domain import Channel, LineStatus
from store.errors import RuleViolation
from store.invoices import check_waybill_allowed
from store.models import ChannelOp, Claim, Invoice
from store.oms import Applied, apply_hold_release, apply_shipment
from store.state_machine import check_cancel, check_transition
from topics.commands import (
    BuyerCancelDecision,
    BuyerMessage,
    DispatchDelay,
    HoldRelease,
    OrderConfirm,
    PickupReached,
    ReturnHold,
    ReturnLines,
    SellerCancel,
    ShipmentRegistered,
    WaybillRequest,
)
from topics.envelope import Envelope

Plan = tuple[Applied, list[ChannelOp]]


async def plan_shipment(session: AsyncSession, env: Envelope, cmd: ShipmentRegistered) -> Plan:
    """Attach the invoice (R05, R18, R28); with ``dispatch_now`` also push the dispatch."""
    applied = await apply_shipment(session, env, cmd)
    if not cmd.dispatch_now:
        return applied, []
    return await _pickup(session, env, cmd.line_ids, env.occurred_at, applied.message)


async def plan_pickup(session: AsyncSession, env: Envelope, cmd: PickupReached) -> Plan:
    return await _pickup(session, env, cmd.line_ids, cmd.scanned_at, "pickup reached")


async def _pickup(
    session: AsyncSession, env: Envelope, line_ids: list[str], at: datetime, message: str
) -> Plan:
    """R06: the carrier has the parcel → SHIPPING (+ dispatch push for channel orders)."""
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, line_ids)
    if not ob.is_channel_order(order):
        view = await repo.order_view(session, order)
        views = {lv.line_id: lv for lv in view.lines}
        for line in lines:
            if LineStatus(line.status) is LineStatus.READY_TO_SHIP:
                check_transition(view, views[line.id], LineStatus.SHIPPING)
                repo.set_status(
                    session, line, LineStatus.SHIPPING, f"event:{env.event_id}", "R06 pickup"
                )
        return Applied(f"{message}; {len(lines)} line(s) shipping"), []
    ops = await ob.plan_dispatch(session, order, lines, str(env.event_id), at, reason="pickup")
    parked = sum(1 for op in ops if op.state == "parked")
    # the command agent adds the op ids to the detail once they are flushed
    return Applied(f"{message}; {len(ops)} dispatch op(s), {parked} parked"), ops


async def plan_waybill(session: AsyncSession, env: Envelope, cmd: WaybillRequest) -> Plan:
    """R05 + R12: waybills only for READY_TO_SHIP lines of an order not on hold; R27: no sender
    is sent (Goodsflow uses the contract's). One op per line, keyed by the line (a line gets one
    waybill; a reprint after an address change is a new request once the hold is released)."""
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, cmd.line_ids)
    ops = []
    for line in lines:
        check_waybill_allowed(order.on_hold, LineStatus(line.status), order_id=order.id)
        old = [
            inv for inv in await repo.active_invoices(session, [line.id]) if inv.reprint_required
        ]
        printed = await session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.line_id == line.id)
        )
        unique = f"{line.id}" + (f":r{printed}" if old else "")
        payload = {
            "unique_id": unique,
            "line_ids": [line.id],
            "unit_ids": [line.channel_unit_id or line.id],
            "carrier": cmd.carrier.value,
            "receiver": order.address,
            "replaces": next((inv.waybill_id for inv in old if inv.waybill_id), None),
            "items": [
                {
                    "order_no": order.channel_order_id or order.id,
                    "name": line.name or line.sku,
                    "quantity": line.quantity,
                    "price": int(line.unit_price),
                }
            ],
        }
        op, _ = await ledger.record_intent(
            session,
            key=f"waybill:{unique}",
            order_id=order.id,
            channel="goodsflow",
            action=ob.REQUEST_WAYBILL,
            payload=payload,
            source_event_id=str(env.event_id),
        )
        ops.append(op)
    return Applied(f"{len(ops)} waybill request(s) queued"), ops


async def plan_confirm(session: AsyncSession, env: Envelope, cmd: OrderConfirm) -> Plan:
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, cmd.line_ids)
    if not ob.is_channel_order(order):
        return Applied("order confirmed (no marketplace)"), []
    payload = {
        "unit_ids": list(dict.fromkeys(ln.channel_unit_id or ln.id for ln in lines)),
        "line_ids": [ln.id for ln in lines],
        "estimated_ship_date": cmd.estimated_ship_date.isoformat()
        if cmd.estimated_ship_date
        else None,
    }
    op = await ob.plan_simple(session, order, ob.CONFIRM, payload, str(env.event_id))
    return Applied("order confirmation queued"), [op]


async def plan_delay(session: AsyncSession, env: Envelope, cmd: DispatchDelay) -> Plan:
    """R13: Naver only, PREPARING lines, one order per request."""
    order = await repo.get_order(session, env.order_id, lock=True)
    if Channel(order.channel) is not Channel.NAVERPAY:
        raise RuleViolation(
            "R13", f"dispatch delay exists only for naverpay orders, not {order.channel}"
        )
    lines = repo.pick_lines(order, cmd.line_ids)
    for line in lines:
        if LineStatus(line.status) is not LineStatus.PREPARING:
            raise RuleViolation(
                "R13", f"line {line.id} is {line.status}; dispatch delay needs PREPARING"
            )
    payload = {
        "unit_ids": [ln.channel_unit_id or ln.id for ln in lines],
        "line_ids": [ln.id for ln in lines],
        "due_date": cmd.due_date.isoformat(),
        "reason": cmd.reason,
        "detail": cmd.detail,
    }
    op = await ob.plan_simple(session, order, ob.DELAY, payload, str(env.event_id))
    return Applied(f"dispatch delay to {cmd.due_date} queued"), [op]


async def plan_seller_cancel(session: AsyncSession, env: Envelope, cmd: SellerCancel) -> Plan:
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, cmd.line_ids)
    if not ob.is_channel_order(order):
        view = await repo.order_view(session, order)
        views = {lv.line_id: lv for lv in view.lines}
        for line in lines:
            check_cancel(view, views[line.id])
        for line in lines:
            repo.set_status(session, line, LineStatus.CANCELED, f"event:{env.event_id}", cmd.reason)
        return Applied(f"{len(lines)} line(s) cancelled"), []
    if Channel(order.channel) is Channel.QOO10:
        _check_qoo10_cancel(order, lines, cmd)
    op = await ob.plan_cancel(
        session, order, lines, cmd.reason, cmd.buyer_message, str(env.event_id)
    )
    return Applied("seller cancel queued", {"units": op.payload["unit_ids"]}), [op]


SELLER_FAULT = {"SOLD_OUT", "DELAYED_DELIVERY", "UNDELIVERABLE_AREA"}


def _check_qoo10_cancel(order: Any, lines: list[Any], cmd: SellerCancel) -> None:
    """R23: buyer-fault reasons need an open buyer request; the buyer message is mandatory
    (it is sent before the cancel). R24: after dispatch only a return for delivery delay."""
    shipped = [
        ln for ln in lines if LineStatus(ln.status) in (LineStatus.SHIPPING, LineStatus.DELIVERED)
    ]
    if shipped and cmd.reason != "DELAYED_DELIVERY":
        raise RuleViolation(
            "R24", "after dispatch a Qoo10 seller refund is a return for delivery delay only"
        )
    requested = all(LineStatus(ln.status) is LineStatus.CANCEL_REQUESTED for ln in lines)
    if cmd.reason not in SELLER_FAULT and not requested:
        raise RuleViolation("R23", f"reason {cmd.reason} needs a buyer cancel request on Qoo10")
    if not cmd.buyer_message:
        raise RuleViolation(
            "R23",
            "a Qoo10 seller cancel sends the buyer a message first: buyer_message is required",
        )


async def plan_cancel_decision(
    session: AsyncSession, env: Envelope, cmd: BuyerCancelDecision
) -> Plan:
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, cmd.line_ids)
    units = list(dict.fromkeys(ln.channel_unit_id or ln.id for ln in lines))
    payload = {"unit_ids": units, "line_ids": [ln.id for ln in lines], "reason": cmd.reason}
    if env.type == "buyer_cancel.approve":
        if not ob.is_channel_order(order):
            for line in lines:
                repo.set_status(
                    session, line, LineStatus.CANCELED, f"event:{env.event_id}", "cancel approved"
                )
            return Applied("cancel approved"), []
        op = await ob.plan_simple(session, order, ob.APPROVE_CANCEL, payload, str(env.event_id))
        return Applied("cancel approval queued"), [op]
    # reject = the operator's explicit "refuse the cancel and ship" (R29)
    for line in lines:
        if LineStatus(line.status) is LineStatus.CANCEL_REQUESTED:
            repo.set_status(
                session,
                line,
                LineStatus.READY_TO_SHIP if _has_invoice_hint(line) else LineStatus.PREPARING,
                f"event:{env.event_id}",
                "R29 cancel refused by operator",
            )
    ops: list[ChannelOp] = []
    if Channel(order.channel) is Channel.QOO10:
        ops.append(
            await ob.plan_simple(session, order, ob.REJECT_CANCEL, payload, str(env.event_id))
        )
    released = await ob.unpark(session, order.id, override_claim=True)
    return Applied(
        f"cancel refused; {released} parked dispatch(es) released", {"released": released}
    ), ops


def _has_invoice_hint(line: Any) -> bool:
    return bool(line.channel_notified) or line.shipped_quantity is not None


async def plan_return(session: AsyncSession, env: Envelope, cmd: ReturnHold | ReturnLines) -> Plan:
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, cmd.line_ids)
    action = {
        "return.hold": ob.RETURN_HOLD,
        "return.hold_release": ob.RETURN_HOLD_RELEASE,
        "return.approve": ob.RETURN_APPROVE,
    }[env.type]
    extra: dict[str, Any] = {}
    if isinstance(cmd, ReturnHold):
        extra = {"fee": str(cmd.fee), "fee_payment": cmd.fee_payment, "reason": cmd.reason}
        await _record_fee(session, lines, cmd)
    if action == ob.RETURN_APPROVE:
        await _check_return_approve(session, lines)
    op = await ob.plan_return_op(session, order, lines, action, extra, str(env.event_id))
    return Applied(f"{action} queued"), [op]


async def _record_fee(session: AsyncSession, lines: list[Any], cmd: ReturnHold) -> None:
    from sqlalchemy import select

    for claim in (
        await session.execute(select(Claim).where(Claim.line_id.in_([ln.id for ln in lines])))
    ).scalars():
        claim.fee = cmd.fee
        claim.fee_payment = cmd.fee_payment


async def _check_return_approve(session: AsyncSession, lines: list[Any]) -> None:
    """R14: a held return whose fee is paid by transfer / in the box must be released first."""
    from sqlalchemy import select

    ids = [ln.id for ln in lines]
    for claim in (await session.execute(select(Claim).where(Claim.line_id.in_(ids)))).scalars():
        held = any(
            ln.id == claim.line_id and LineStatus(ln.status) is LineStatus.RETURN_HELD
            for ln in lines
        )
        if held and claim.fee_payment in ("transfer", "in_box"):
            raise RuleViolation(
                "R14",
                "return held for a fee paid by transfer/in the box: release the hold first, complete after payment",
            )


async def plan_hold_release(session: AsyncSession, env: Envelope, cmd: HoldRelease) -> Plan:
    """R12: the operator lifts the hold; parked work proceeds."""
    applied = await apply_hold_release(session, env, cmd)
    resumed = await ob.unpark(session, env.order_id)
    return Applied(
        f"{applied.message}; {resumed} parked op(s) resumed", {**applied.detail, "resumed": resumed}
    ), []


async def plan_buyer_message(session: AsyncSession, env: Envelope, cmd: BuyerMessage) -> Plan:
    order = await repo.get_order(session, env.order_id)
    if Channel(order.channel) is not Channel.QOO10:
        raise RuleViolation(
            "R23", f"buyer messages are sent through Qoo10 only, not {order.channel}"
        )
    payload = {"order_no": order.channel_order_id or order.id, "text": cmd.text, "unit_ids": []}
    op = await ob.plan_simple(session, order, ob.BUYER_MESSAGE, payload, str(env.event_id))
    return Applied("buyer message queued"), [op]


PLANS: dict[str, Callable[[AsyncSession, Envelope, Any], Awaitable[Plan]]] = {
    "shipment.registered": plan_shipment,
    "pickup.reached": plan_pickup,
    "waybill.request": plan_waybill,
    "order.confirm": plan_confirm,
    "dispatch.delay": plan_delay,
    "seller.cancel": plan_seller_cancel,
    "buyer_cancel.approve": plan_cancel_decision,
    "buyer_cancel.reject": plan_cancel_decision,
    "return.hold": plan_return,
    "return.hold_release": plan_return,
    "return.approve": plan_return,
    "hold.release": plan_hold_release,
    "buyer.message": plan_buyer_message,
}
