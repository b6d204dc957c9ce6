"""Apply marketplace changes (``channel.changes``) to the store.

The marketplace is the truth for what happened on its side, so these moves do not go through the
operator rules of R01; they never move a final line backwards and never apply a fact twice
(the ``channel_changes`` row of its ``change_key`` carries ``applied_at``: R17).
Internal order id of a channel order: ``<channel>:<channel order id>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger, repo
from store import outbound as ob
from store.domain import FINAL_STATUSES, Channel, ClaimStatus, ClaimType, LineStatus
from store.ledger import OpState
from store.models import (
    ChannelChangeRow,
    ChannelOp,
    Claim,
    Invoice,
    Order,
    OrderLine,
    StatusHistory,
    utcnow,
)
from store.state_machine import initial_status
from topics.changes import ChangeKind, ChannelChange


class UnknownChangeError(ValueError):
    """A change kind the store does not handle (dead-lettered, never silently dropped)."""


class UnknownOrderError(LookupError):
    """A change for an order the store has never seen and that carries no order detail."""


@dataclass(frozen=True)
class ChangeApplied:
    outcome: str  # applied | duplicate
    message: str
    order_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def order_id_for(channel: str, channel_order_id: str) -> str:
    return f"{channel}:{channel_order_id}"


def channel_of_order(order_id: str) -> Channel:
    """The channel an internal order id belongs to (``oms`` for the shop's own ids)."""
    prefix = order_id.split(":", 1)[0]
    return Channel(prefix) if prefix in {c.value for c in Channel} else Channel.OMS


async def record_change(session: AsyncSession, change: ChannelChange) -> bool:
    """Insert the change into the inbound log; False when its key is already there (R17)."""
    stmt = select(ChannelChangeRow.id).where(ChannelChangeRow.dedupe_key == change.change_key)
    if (await session.execute(stmt)).first() is not None:
        return False
    session.add(change_row(change))
    return True


def change_row(change: ChannelChange, **extra: Any) -> ChannelChangeRow:
    """The inbound-log row of ``change`` (``extra``: e.g. applied_at, order_id, outcome)."""
    return ChannelChangeRow(
        dedupe_key=change.change_key,
        channel=change.channel.value,
        account=change.account,
        kind=change.kind.value,
        channel_order_id=change.channel_order_id,
        changed_at=change.changed_at,
        payload=change.model_dump(mode="json"),
        **extra,
    )


async def apply_change(session: AsyncSession, change: ChannelChange) -> ChangeApplied:
    row = (
        await session.execute(
            select(ChannelChangeRow).where(ChannelChangeRow.dedupe_key == change.change_key)
        )
    ).scalar_one_or_none()
    if row is None:
        await record_change(session, change)
        await session.flush()
        row = (
            await session.execute(
                select(ChannelChangeRow).where(ChannelChangeRow.dedupe_key == change.change_key)
            )
        ).scalar_one()
    if row.applied_at is not None:
        return ChangeApplied(
            "duplicate", f"change {change.change_key} already applied", row.order_id
        )
    if change.kind is ChangeKind.UNKNOWN:
        raise UnknownChangeError(f"unmapped marketplace change {change.raw_type!r}")
    order = await _order_for(session, change)
    source = f"change:{change.change_key}"
    handler = HANDLERS.get(change.kind)
    if handler is None:
        raise UnknownChangeError(f"no handler for change kind {change.kind}")
    message = await handler(session, order, change, source)
    row.applied_at = utcnow()
    row.order_id = order.id
    row.outcome = "applied"
    return ChangeApplied("applied", message, order.id)


async def _order_for(session: AsyncSession, change: ChannelChange) -> Order:
    order = await repo.find_order(
        session, change.channel.value, change.account, change.channel_order_id
    )
    if order is not None:
        return order
    if change.order is None:
        raise UnknownOrderError(f"{change.channel}:{change.channel_order_id} is not in the store")
    return await _create_order(session, change)


async def _create_order(session: AsyncSession, change: ChannelChange) -> Order:
    order = build_order(session, change)
    await session.flush()
    await session.refresh(order, ["lines"])
    return order


def order_values(change: ChannelChange) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Column values of the order of an ORDER_PAID-style change and of its lines."""
    co = change.order
    assert co is not None
    order_id = order_id_for(change.channel.value, co.channel_order_id)
    order: dict[str, Any] = {
        "id": order_id,
        "channel": change.channel.value,
        "account": change.account,
        "channel_order_id": co.channel_order_id,
        "payment_method": co.payment_method.value,
        "paid": True,
        "buyer_name": co.buyer_name,
        "address": co.address.model_dump(mode="json"),
        "total_paid": sum((ln.amount for ln in co.lines), Decimal(0)),
        "mileage_used": co.mileage_used,
        "earning_base": co.earning_base,
    }
    lines: list[dict[str, Any]] = [
        {
            "id": f"{order_id}:{ln.unit_id}",
            "order_id": order_id,
            "sku": ln.sku,
            "name": ln.name,
            "kind": ln.kind.value,
            "quantity": ln.quantity,
            "unit_price": ln.unit_price,
            "amount": ln.amount,
            "status": initial_status(ln.kind, True).value,
            "channel_unit_id": ln.unit_id,
            "channel_notified": [],
        }
        for ln in co.lines
    ]
    return order, lines


def build_order(session: AsyncSession, change: ChannelChange) -> Order:
    """The order of an ORDER_PAID-style change (``change.order``), added to the session with its
    lines (``order.lines`` set) and their first history rows; nothing is flushed."""
    values, line_values = order_values(change)
    order = Order(**values)
    session.add(order)
    lines: list[OrderLine] = []
    for lv in line_values:
        line = OrderLine(**lv)
        session.add(line)
        lines.append(line)
        repo.record_initial(session, line, f"change:{change.change_key}", "order paid")
    order.lines = sorted(lines, key=lambda ln: ln.id)  # the relationship's own order_by
    return order


def _lines(order: Order, change: ChannelChange) -> list[OrderLine]:
    if not change.unit_ids:
        return list(order.lines)
    wanted = set(change.unit_ids)
    return [ln for ln in order.lines if (ln.channel_unit_id or ln.id) in wanted]


def _move(
    session: AsyncSession, lines: Sequence[OrderLine], to: LineStatus, source: str, note: str
) -> int:
    n = 0
    for line in lines:
        if LineStatus(line.status) in FINAL_STATUSES or line.status == to:
            continue
        repo.set_status(session, line, to, source, note)
        n += 1
    return n


async def _open_ops(
    session: AsyncSession, order_id: str, action: str | None = None
) -> list[ChannelOp]:
    stmt = select(ChannelOp).where(
        ChannelOp.order_id == order_id, ChannelOp.state.in_([s.value for s in ledger.OPEN_STATES])
    )
    if action:
        stmt = stmt.where(ChannelOp.action == action)
    return list((await session.execute(stmt)).scalars())


async def _paid(session: AsyncSession, order: Order, change: ChannelChange, source: str) -> str:
    return f"order {order.id} with {len(order.lines)} line(s)"


async def _address(session: AsyncSession, order: Order, change: ChannelChange, source: str) -> str:
    """R12: new address stored, delivery hold raised, printed waybills flagged, dispatches parked."""
    if change.address is not None:
        new_address = change.address.model_dump(mode="json")
        if new_address == order.address:
            return "address unchanged (already applied): no new hold"
        order.address = new_address
    await repo.raise_hold(session, order, "address_changed", source)
    reprint = 0
    for inv in await repo.active_invoices(session, [ln.id for ln in order.lines]):
        if not inv.reprint_required:
            inv.reprint_required = True
            reprint += 1
    parked = 0
    for op in await _open_ops(session, order.id, ob.DISPATCH):
        if op.state in (OpState.PENDING, OpState.RETRY):
            ledger.mark_parked(op, {"rule": "R12", "message": "address changed: delivery hold"})
            parked += 1
    return f"address changed: hold raised, {reprint} waybill(s) to reprint, {parked} dispatch(es) parked"


async def _dispatched(
    session: AsyncSession, order: Order, change: ChannelChange, source: str
) -> str:
    """R15: the marketplace dispatched the unit → every store line of it is SHIPPING."""
    lines = _lines(order, change)
    moved = 0
    for line in lines:
        status = LineStatus(line.status)
        if status in (LineStatus.PREPARING, LineStatus.READY_TO_SHIP):
            if status is LineStatus.PREPARING:
                repo.set_status(session, line, LineStatus.READY_TO_SHIP, source, "R15 collapse")
            repo.set_status(
                session, line, LineStatus.SHIPPING, source, "dispatched on the marketplace"
            )
            line.collapse = {
                "unit_id": line.channel_unit_id,
                "by": "marketplace",
                "channel_quantity": line.quantity,
            }
            moved += 1
        repo.mark_notified(line, LineStatus.SHIPPING)
        if change.carrier and change.tracking_number:
            existing = await repo.active_invoices(session, [line.id])
            if not any(inv.tracking_number == change.tracking_number for inv in existing):
                session.add(
                    Invoice(
                        order_id=order.id,
                        line_id=line.id,
                        carrier=change.carrier.value,
                        tracking_number=change.tracking_number,
                        valid=True,
                    )
                )
    units = {ln.channel_unit_id for ln in lines}
    for op in await _open_ops(session, order.id, ob.DISPATCH):
        if op.payload.get("unit_id") in units:
            ledger.mark_done(op, {"reconciled": "dispatched on the marketplace"})
    return f"{moved} line(s) collapsed to SHIPPING"


async def _delivered(
    session: AsyncSession, order: Order, change: ChannelChange, source: str
) -> str:
    lines = [ln for ln in _lines(order, change) if LineStatus(ln.status) is LineStatus.SHIPPING]
    return f"{_move(session, lines, LineStatus.DELIVERED, source, 'delivered')} line(s) delivered"


async def _decided(session: AsyncSession, order: Order, change: ChannelChange, source: str) -> str:
    """R07: the buyer confirmed early."""
    lines = _lines(order, change)
    for line in lines:
        if LineStatus(line.status) is LineStatus.SHIPPING:
            repo.set_status(
                session, line, LineStatus.DELIVERED, source, "implied by purchase decision"
            )
    lines = [ln for ln in lines if LineStatus(ln.status) is LineStatus.DELIVERED]
    return f"{_move(session, lines, LineStatus.PURCHASE_CONFIRMED, source, 'R07 buyer confirmed')} line(s) confirmed"


async def _claim(
    session: AsyncSession,
    order: Order,
    lines: Sequence[OrderLine],
    change: ChannelChange,
    ctype: ClaimType,
    status: ClaimStatus,
) -> None:
    for line in lines:
        stmt = select(Claim).where(Claim.line_id == line.id, Claim.claim_type == ctype.value)
        if change.claim_id:
            stmt = stmt.where(Claim.channel_claim_id == change.claim_id)
        claim = (await session.execute(stmt.order_by(Claim.id.desc()))).scalars().first()
        if claim is None:
            session.add(
                Claim(
                    order_id=order.id,
                    line_id=line.id,
                    channel_claim_id=change.claim_id,
                    claim_type=ctype.value,
                    status=status.value,
                    reason=change.reason,
                )
            )
        else:
            claim.status = status.value


async def _cancel_requested(
    session: AsyncSession, order: Order, change: ChannelChange, source: str
) -> str:
    """R25/R29: the request blocks dispatch until approved, withdrawn or refused."""
    lines = [
        ln
        for ln in _lines(order, change)
        if LineStatus(ln.status)
        in (LineStatus.PREPARING, LineStatus.READY_TO_SHIP, LineStatus.PAYMENT_WAITING)
    ]
    await _claim(session, order, lines, change, ClaimType.CANCEL, ClaimStatus.REQUESTED)
    moved = _move(session, lines, LineStatus.CANCEL_REQUESTED, source, "buyer cancel request")
    parked = 0
    units = {ln.channel_unit_id for ln in lines}
    for op in await _open_ops(session, order.id, ob.DISPATCH):
        if op.payload.get("unit_id") in units and op.state in (OpState.PENDING, OpState.RETRY):
            ledger.mark_parked(
                op,
                {
                    "rule": "R29" if order.channel == "naverpay" else "R25",
                    "message": "open buyer cancel request",
                },
            )
            parked += 1
    return f"{moved} line(s) cancel-requested; {parked} dispatch(es) parked"


async def _cancel_withdrawn(
    session: AsyncSession, order: Order, change: ChannelChange, source: str
) -> str:
    lines = [
        ln for ln in _lines(order, change) if LineStatus(ln.status) is LineStatus.CANCEL_REQUESTED
    ]
    await _claim(session, order, lines, change, ClaimType.CANCEL, ClaimStatus.WITHDRAWN)
    for line in lines:
        back = await _status_before(session, line, LineStatus.CANCEL_REQUESTED)
        repo.set_status(session, line, back, source, "buyer withdrew the cancel request")
    resumed = 0
    for op in await ledger.parked_ops(session, order.id):
        if (op.last_error or {}).get("rule") in ("R29", "R25"):
            op.state = OpState.PENDING.value
            op.last_error = None
            resumed += 1
    return f"cancel request withdrawn on {len(lines)} line(s); {resumed} dispatch(es) resumed"


async def _status_before(session: AsyncSession, line: OrderLine, status: LineStatus) -> LineStatus:
    stmt = (
        select(StatusHistory.from_status)
        .where(StatusHistory.line_id == line.id, StatusHistory.to_status == status.value)
        .order_by(StatusHistory.id.desc())
    )
    prev = (await session.execute(stmt)).scalars().first()
    return LineStatus(prev) if prev else LineStatus.PREPARING


async def _canceled(session: AsyncSession, order: Order, change: ChannelChange, source: str) -> str:
    """R16: whole lines; a cancel of a dispatched line is handled as a return. R25: immediate
    cancels arrive completed."""
    lines = _lines(order, change)
    shipped = [
        ln for ln in lines if LineStatus(ln.status) in (LineStatus.SHIPPING, LineStatus.DELIVERED)
    ]
    cancel = [ln for ln in lines if ln not in shipped]
    await _claim(session, order, cancel, change, ClaimType.CANCEL, ClaimStatus.COMPLETED)
    n = _move(session, cancel, LineStatus.CANCELED, source, "cancelled on the marketplace")
    if shipped:
        await _claim(session, order, shipped, change, ClaimType.RETURN, ClaimStatus.REQUESTED)
        _move(
            session,
            shipped,
            LineStatus.RETURN_REQUESTED,
            source,
            "R16 cancel after dispatch handled as return",
        )
    units = {ln.channel_unit_id for ln in cancel}
    for op in await _open_ops(session, order.id, ob.DISPATCH):
        if op.payload.get("unit_id") in units:
            ledger.mark_failed(op, {"rule": "R16", "message": "unit cancelled on the marketplace"})
    return f"{n} line(s) cancelled, {len(shipped)} turned into return(s)"


def _simple(to: LineStatus, ctype: ClaimType, cstatus: ClaimStatus, note: str) -> Any:
    async def handler(
        session: AsyncSession, order: Order, change: ChannelChange, source: str
    ) -> str:
        lines = _lines(order, change)
        await _claim(session, order, lines, change, ctype, cstatus)
        return f"{_move(session, lines, to, source, note)} line(s) -> {to}"

    return handler


async def _exchanged(
    session: AsyncSession, order: Order, change: ChannelChange, source: str
) -> str:
    """R10: approval adds a re-shipment line in PREPARING."""
    lines = _lines(order, change)
    await _claim(session, order, lines, change, ClaimType.EXCHANGE, ClaimStatus.COMPLETED)
    n = _move(session, lines, LineStatus.EXCHANGED, source, "exchange completed")
    for line in lines:
        new_id = f"{line.id}:x"
        if await session.get(OrderLine, new_id) is None:
            new = OrderLine(
                id=new_id,
                order_id=order.id,
                sku=line.sku,
                name=line.name,
                kind=line.kind,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=Decimal(0),
                status=LineStatus.PREPARING.value,
                channel_unit_id=line.channel_unit_id,
                split_parent_id=line.id,
                channel_notified=[],
            )
            session.add(new)
            repo.set_status(session, new, LineStatus.PREPARING, source, "R10 re-shipment")
    return f"{n} line(s) exchanged; re-shipment line(s) added"


HANDLERS: dict[ChangeKind, Any] = {
    ChangeKind.ORDER_PAID: _paid,
    ChangeKind.ADDRESS_CHANGED: _address,
    ChangeKind.DISPATCHED: _dispatched,
    ChangeKind.DELIVERED: _delivered,
    ChangeKind.PURCHASE_DECIDED: _decided,
    ChangeKind.CANCEL_REQUESTED: _cancel_requested,
    ChangeKind.CANCEL_WITHDRAWN: _cancel_withdrawn,
    ChangeKind.CANCELED: _canceled,
    ChangeKind.RETURN_REQUESTED: _simple(
        LineStatus.RETURN_REQUESTED, ClaimType.RETURN, ClaimStatus.REQUESTED, "return requested"
    ),
    ChangeKind.RETURN_HELD: _simple(
        LineStatus.RETURN_HELD, ClaimType.RETURN, ClaimStatus.HELD, "R14 return held"
    ),
    ChangeKind.RETURN_HOLD_RELEASED: _simple(
        LineStatus.RETURN_REQUESTED, ClaimType.RETURN, ClaimStatus.REQUESTED, "R14 hold released"
    ),
    ChangeKind.RETURNED: _simple(
        LineStatus.RETURNED, ClaimType.RETURN, ClaimStatus.COMPLETED, "returned"
    ),
    ChangeKind.EXCHANGE_REQUESTED: _simple(
        LineStatus.EXCHANGE_REQUESTED,
        ClaimType.EXCHANGE,
        ClaimStatus.REQUESTED,
        "exchange requested",
    ),
    ChangeKind.EXCHANGED: _exchanged,
}
