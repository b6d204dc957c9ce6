"""Apply OMS commands that change only the store (no marketplace call).

Each ``apply_*`` checks the state machine first (raising a :class:`~store.errors.RuleViolation`
that carries the rule id), then writes the effect. They never commit: the agent commits the
effect together with the processed-event marker, so a redelivered command is a no-op (S1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store import batch_cache, repo
from store.domain import LineStatus, PaymentMethod
from store.errors import RuleViolation
from store.invoices import validate_invoice
from store.models import Invoice, Order, OrderLine, utcnow
from store.state_machine import (
    check_attach_invoice,
    check_refund,
    check_split,
    check_transition,
    initial_status,
)
from topics.commands import (
    HoldRelease,
    InvoiceDeleted,
    LineSplit,
    LineStatusChange,
    OrderImport,
    RefundRequest,
    ShipmentRegistered,
)
from topics.envelope import Envelope


@dataclass(frozen=True)
class Applied:
    """What a command did (becomes the ``detail`` of its result)."""

    message: str
    detail: dict[str, Any] = field(default_factory=dict)


async def apply_order_import(session: AsyncSession, env: Envelope, cmd: OrderImport) -> Applied:
    existing = await session.get(Order, env.order_id)
    if existing is not None:
        return Applied("order already exists", {"order_id": env.order_id, "created": False})
    paid = cmd.status is not LineStatus.PAYMENT_WAITING
    total = sum((ln.unit_price * ln.quantity for ln in cmd.lines), Decimal(0))
    order = Order(
        id=env.order_id,
        channel=env.channel.value,
        account="default",
        channel_order_id=cmd.channel_order_id,
        payment_method=cmd.payment_method.value,
        paid=paid,
        payment_deadline=cmd.payment_deadline,
        address=cmd.address.model_dump(mode="json"),
        total_paid=total if paid else Decimal(0),
    )
    session.add(order)
    for spec in cmd.lines:
        status = initial_status(spec.kind, paid)
        if paid and status is LineStatus.PREPARING and cmd.status is not LineStatus.PREPARING:
            status = cmd.status
        line = OrderLine(
            id=spec.line_id,
            order_id=order.id,
            sku=spec.sku,
            name=spec.name,
            kind=spec.kind.value,
            quantity=spec.quantity,
            unit_price=spec.unit_price,
            amount=spec.unit_price * spec.quantity,
            status=status.value,
            channel_unit_id=spec.channel_unit_id,
            channel_notified=[],
        )
        session.add(line)
        repo.record_initial(session, line, f"event:{env.event_id}", "imported")
    return Applied("order imported", {"order_id": order.id, "lines": len(cmd.lines)})


async def apply_line_status(session: AsyncSession, env: Envelope, cmd: LineStatusChange) -> Applied:
    order = await repo.get_order(session, env.order_id, lock=True)
    view = await repo.order_view(session, order)
    lines = repo.pick_lines(order, cmd.line_ids)
    views = {lv.line_id: lv for lv in view.lines}
    for line in lines:
        check_transition(view, views[line.id], cmd.to_status)
    for line in lines:
        repo.set_status(session, line, cmd.to_status, f"event:{env.event_id}", f"by {cmd.by}")
    return Applied(f"{len(lines)} line(s) -> {cmd.to_status}", {"lines": [ln.id for ln in lines]})


async def apply_line_split(session: AsyncSession, env: Envelope, cmd: LineSplit) -> Applied:
    order = await repo.get_order(session, env.order_id, lock=True)
    view = await repo.order_view(session, order)
    (line,) = repo.pick_lines(order, [cmd.line_id])
    lv = next(v for v in view.lines if v.line_id == line.id)
    parts = check_split(view, lv, cmd.quantities)
    created = []
    line.quantity = parts[0]
    line.amount = line.unit_price * parts[0]
    for i, qty in enumerate(parts[1:], start=1):
        new = OrderLine(
            id=f"{line.id}-{i}",
            order_id=order.id,
            sku=line.sku,
            name=line.name,
            kind=line.kind,
            quantity=qty,
            unit_price=line.unit_price,
            amount=line.unit_price * qty,
            status=line.status,
            channel_unit_id=line.channel_unit_id,
            split_parent_id=line.id,
            channel_notified=[],
        )
        session.add(new)
        created.append(new.id)
    return Applied(f"line {line.id} split into {list(parts)}", {"new_lines": created})


async def apply_shipment(session: AsyncSession, env: Envelope, cmd: ShipmentRegistered) -> Applied:
    """R05 (READY_TO_SHIP only), R18/R28 (number rules) then one invoice row per line."""
    order = await repo.get_order(session, env.order_id, lock=True)
    view = await repo.order_view(session, order)
    lines = repo.pick_lines(order, cmd.line_ids)
    views = {lv.line_id: lv for lv in view.lines}
    for line in lines:
        check_attach_invoice(view, views[line.id])
    number = validate_invoice(cmd.carrier, cmd.tracking_number, cmd.kind)
    existing = {
        (inv.line_id, inv.carrier, inv.tracking_number)
        for inv in await repo.active_invoices(session, [ln.id for ln in lines])
    }
    added = []
    for line in lines:
        if (line.id, cmd.carrier.value, number) in existing:
            continue
        invoice = Invoice(
            order_id=order.id,
            line_id=line.id,
            carrier=cmd.carrier.value,
            tracking_number=number,
            kind=cmd.kind.value,
            valid=True,
        )
        session.add(invoice)
        batch_cache.register_invoice(session, invoice)
        line.invoice_rejection = None
        if cmd.shipped_quantity and line.id in cmd.shipped_quantity:
            line.shipped_quantity = cmd.shipped_quantity[line.id]
        added.append(line.id)
    return Applied(
        f"invoice {cmd.carrier}:{number} attached to {len(added)} line(s)",
        {"lines": added, "tracking_number": number, "carrier": cmd.carrier.value},
    )


async def apply_invoice_deleted(
    session: AsyncSession, env: Envelope, cmd: InvoiceDeleted
) -> Applied:
    order = await repo.get_order(session, env.order_id, lock=True)
    lines = repo.pick_lines(order, cmd.line_ids)
    for line in lines:
        if LineStatus(line.status) not in (LineStatus.READY_TO_SHIP, LineStatus.PREPARING):
            raise RuleViolation("R09", f"line {line.id} is {line.status}: its invoice stays")
    now = utcnow()
    invoices = await repo.active_invoices(session, [ln.id for ln in lines])
    for inv in invoices:
        inv.deleted_at = now
    return Applied(f"{len(invoices)} invoice(s) deleted")


async def apply_hold_release(session: AsyncSession, env: Envelope, cmd: HoldRelease) -> Applied:
    order = await repo.get_order(session, env.order_id, lock=True)
    released = await repo.release_holds(session, order, cmd.by, cmd.note)
    return Applied(f"{released} hold(s) released by {cmd.by}", {"released": released})


async def apply_refund(session: AsyncSession, env: Envelope, cmd: RefundRequest) -> Applied:
    order = await repo.get_order(session, env.order_id, lock=True)
    view = await repo.order_view(session, order)
    check_refund(view, cmd.amount)
    order.refunded = Decimal(order.refunded or 0) + cmd.amount
    whole = PaymentMethod(order.payment_method) is PaymentMethod.VIRTUAL_ACCOUNT
    return Applied(f"refund of {cmd.amount} recorded", {"whole": whole})
