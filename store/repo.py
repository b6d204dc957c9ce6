"""Queries and small writes over the store models (async SQLAlchemy sessions).

Functions here never commit: the caller owns the transaction, so an effect and its bookkeeping
(status history, processed-event marker, ledger row) are committed together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import batch_cache
from store.domain import Channel, ClaimStatus, LineStatus, PaymentMethod, ProductKind
from store.errors import NotFoundError
from store.models import (
    Claim,
    Hold,
    Invoice,
    Order,
    OrderLine,
    ProcessedEvent,
    StatusHistory,
    utcnow,
)
from store.state_machine import LineView, OrderView


async def get_order(session: AsyncSession, order_id: str, *, lock: bool = False) -> Order:
    locked: set[str] = session.info.get("locked_orders", set())
    if (
        lock
        and order_id not in locked
        and session.bind is not None
        and session.bind.dialect.name == "postgresql"
    ):
        stmt = select(Order).where(Order.id == order_id).with_for_update()
        order = (await session.execute(stmt)).scalar_one_or_none()
    else:
        order = await session.get(Order, order_id)
    if order is None:
        raise NotFoundError(f"order {order_id} not found")
    return order


async def find_order(
    session: AsyncSession, channel: str, account: str, channel_order_id: str
) -> Order | None:
    stmt = select(Order).where(
        Order.channel == channel,
        Order.account == account,
        Order.channel_order_id == channel_order_id,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def lines_by_unit(session: AsyncSession, unit_ids: Iterable[str]) -> list[OrderLine]:
    ids = list(unit_ids)
    if not ids:
        return []
    stmt = select(OrderLine).where(OrderLine.channel_unit_id.in_(ids)).order_by(OrderLine.id)
    return list((await session.execute(stmt)).scalars())


async def lock_orders(session: AsyncSession, order_ids: Iterable[str]) -> list[Order]:
    """Load (and on PostgreSQL lock) many orders in one statement; later ``get_order(lock=True)``
    calls for them in this transaction need no query. Keep the returned list alive: the
    identity map holds objects weakly."""
    ids = sorted(set(order_ids))
    if not ids:
        return []
    stmt = select(Order).where(Order.id.in_(ids)).order_by(Order.id)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    orders = list((await session.execute(stmt)).scalars())
    session.info.setdefault("locked_orders", set()).update(o.id for o in orders)
    return orders


async def lock_channel_orders(
    session: AsyncSession, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], Order]:
    """:func:`find_order` for many ``(channel, account, channel_order_id)`` keys in one
    statement per 1,000 channel order ids, locking the orders found on PostgreSQL (in id
    order, like :func:`lock_orders`). Keys without an order are absent from the answer. Keep
    the returned mapping alive: the identity map holds objects weakly."""
    wanted = set(keys)
    if not wanted:
        return {}
    channels = sorted({k[0] for k in wanted})
    accounts = sorted({k[1] for k in wanted})
    coids = sorted({k[2] for k in wanted})
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    found: dict[tuple[str, str, str], Order] = {}
    for i in range(0, len(coids), 1000):
        stmt = (
            select(Order)
            .where(  # all three: the unique index (channel, account, channel_order_id) answers
                Order.channel.in_(channels),
                Order.account.in_(accounts),
                Order.channel_order_id.in_(coids[i : i + 1000]),
            )
            .order_by(Order.id)
        )
        if postgres:
            stmt = stmt.with_for_update()
        for order in (await session.execute(stmt)).scalars():
            key = (order.channel, order.account, order.channel_order_id or "")
            if key in wanted:
                found[key] = order
    session.info.setdefault("locked_orders", set()).update(o.id for o in found.values())
    return found


def pick_lines(order: Order, line_ids: Sequence[str]) -> list[OrderLine]:
    """The order's lines named by ``line_ids`` (line id or channel unit id), in order.
    Raises NotFoundError naming the first unknown id."""
    by_id = {line.id: line for line in order.lines}
    by_unit: dict[str, list[OrderLine]] = {}
    for line in order.lines:
        if line.channel_unit_id:
            by_unit.setdefault(line.channel_unit_id, []).append(line)
    out: list[OrderLine] = []
    for lid in line_ids:
        if lid in by_id:
            out.append(by_id[lid])
        elif lid in by_unit:
            out.extend(by_unit[lid])
        else:
            raise NotFoundError(f"order {order.id} has no line {lid}")
    return out


async def active_invoices(session: AsyncSession, line_ids: Iterable[str]) -> list[Invoice]:
    ids = list(line_ids)
    if not ids:
        return []
    cache = batch_cache.get(session)
    if cache is not None and cache.covers_lines(ids):
        return cache.active_invoices(ids)
    stmt = select(Invoice).where(Invoice.line_id.in_(ids), Invoice.deleted_at.is_(None))
    return list((await session.execute(stmt)).scalars())


def line_view(
    line: OrderLine, has_invoice: bool, claim_status: ClaimStatus | None = None
) -> LineView:
    return LineView(
        line_id=line.id,
        status=LineStatus(line.status),
        quantity=line.quantity,
        kind=ProductKind(line.kind),
        has_invoice=has_invoice,
        channel_notified=frozenset(LineStatus(s) for s in (line.channel_notified or [])),
        claim_status=claim_status,
    )


OPEN_CLAIM_STATES = (
    ClaimStatus.REQUESTED,
    ClaimStatus.HELD,
    ClaimStatus.COLLECTED,
    ClaimStatus.APPROVED,
)


async def open_claim_states(
    session: AsyncSession, line_ids: Iterable[str]
) -> dict[str, ClaimStatus]:
    """The status of each line's newest open claim."""
    ids = list(line_ids)
    if not ids:
        return {}
    cache = batch_cache.get(session)
    if cache is not None and cache.covers_lines(ids):
        open_states = {s.value for s in OPEN_CLAIM_STATES}
        return {
            claim.line_id: ClaimStatus(claim.status)
            for lid in ids
            for claim in cache.claims.get(lid, ())
            if claim.status in open_states
        }
    stmt = (
        select(Claim.line_id, Claim.status)
        .where(Claim.line_id.in_(ids), Claim.status.in_([s.value for s in OPEN_CLAIM_STATES]))
        .order_by(Claim.id)
    )
    return {line_id: ClaimStatus(status) for line_id, status in (await session.execute(stmt)).all()}


async def order_view(session: AsyncSession, order: Order) -> OrderView:
    invoiced = {
        inv.line_id for inv in await active_invoices(session, [ln.id for ln in order.lines])
    }
    claims = await open_claim_states(session, [ln.id for ln in order.lines])
    return OrderView(
        order_id=order.id,
        channel=Channel(order.channel),
        payment_method=PaymentMethod(order.payment_method),
        lines=tuple(line_view(ln, ln.id in invoiced, claims.get(ln.id)) for ln in order.lines),
        on_hold=order.on_hold,
        paid=order.paid,
        total_paid=Decimal(order.total_paid or 0),
        refunded=Decimal(order.refunded or 0),
    )


def set_status(
    session: AsyncSession,
    line: OrderLine,
    to: LineStatus,
    source: str,
    note: str = "",
    at: datetime | None = None,
) -> None:
    """Move a line and write its history row (no rule check: callers check first)."""
    if line.status == to:
        return
    at = at or utcnow()
    session.add(
        StatusHistory(
            order_id=line.order_id,
            line_id=line.id,
            from_status=line.status,
            to_status=to.value,
            at=at,
            source=source,
            note=note,
        )
    )
    line.status = to.value
    line.status_changed_at = at
    if to is LineStatus.DELIVERED:
        line.delivered_at = at


def record_initial(session: AsyncSession, line: OrderLine, source: str, note: str = "") -> None:
    """History row for a line's first status."""
    session.add(
        StatusHistory(
            order_id=line.order_id,
            line_id=line.id,
            from_status=None,
            to_status=line.status,
            at=line.status_changed_at or utcnow(),
            source=source,
            note=note,
        )
    )


def mark_notified(line: OrderLine, status: LineStatus) -> None:
    """Record that the marketplace has been told of ``status`` (R01 back-moves)."""
    told = set(line.channel_notified or [])
    told.add(status.value)
    line.channel_notified = sorted(told)


async def already_processed(session: AsyncSession, event_id: str) -> ProcessedEvent | None:
    return await session.get(ProcessedEvent, event_id)


async def any_processed(session: AsyncSession, event_ids: list[str]) -> bool:
    stmt = select(ProcessedEvent.event_id).where(ProcessedEvent.event_id.in_(event_ids)).limit(1)
    return (await session.execute(stmt)).first() is not None


def mark_processed(
    session: AsyncSession, event_id: str, topic: str, type_: str, outcome: str
) -> None:
    session.add(ProcessedEvent(event_id=event_id, topic=topic, type=type_, outcome=outcome))


async def open_holds(session: AsyncSession, order_id: str | None = None) -> list[Hold]:
    stmt = select(Hold).where(Hold.released_at.is_(None)).order_by(Hold.raised_at)
    if order_id is not None:
        stmt = stmt.where(Hold.order_id == order_id)
    return list((await session.execute(stmt)).scalars())


async def raise_hold(
    session: AsyncSession, order: Order, reason: str, raised_by: str, note: str = ""
) -> Hold:
    """R12: put the order on delivery hold (idempotent per ``raised_by``)."""
    for hold in await open_holds(session, order.id):
        if hold.raised_by == raised_by:
            return hold
    hold = Hold(order_id=order.id, reason=reason, raised_by=raised_by, note=note)
    session.add(hold)
    order.on_hold = True
    session.add(
        StatusHistory(order_id=order.id, to_status="HOLD", source=raised_by, note=f"hold: {reason}")
    )
    return hold


async def release_holds(session: AsyncSession, order: Order, by: str, note: str = "") -> int:
    """R12: an operator lifts every open hold of the order. Returns how many were open."""
    holds = await open_holds(session, order.id)
    now = utcnow()
    for hold in holds:
        hold.released_at = now
        hold.released_by = by
        hold.note = (hold.note + " " + note).strip()
    if holds or order.on_hold:
        order.on_hold = False
        session.add(
            StatusHistory(
                order_id=order.id, to_status="HOLD_RELEASED", source=f"operator:{by}", note=note
            )
        )
    return len(holds)
