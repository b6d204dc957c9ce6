"""Time-driven rules run by the worker's timers (idempotent: running twice does nothing more).

* R07: ordinary goods delivered 7 days ago are purchase-confirmed.
* R08: unpaid bank-transfer orders past their deadline are cancelled (cannot be resumed).
* R22: an unpaid bank-transfer order that used Naver Mileage is cancelled after 15 days with its
  mileage, when it carries no explicit deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import repo
from store.domain import LineStatus, PaymentMethod
from store.models import Order, OrderLine
from store.state_machine import purchase_confirmation_due, unpaid_order_expired

MILEAGE_UNPAID_CANCEL_AFTER = timedelta(days=15)  # R22


async def confirm_due_purchases(session: AsyncSession, now: datetime) -> int:
    stmt = select(OrderLine).where(
        OrderLine.status == LineStatus.DELIVERED.value, OrderLine.delivered_at.is_not(None)
    )
    n = 0
    for line in (await session.execute(stmt)).scalars():
        assert line.delivered_at is not None
        if purchase_confirmation_due(repo.line_view(line, True), line.delivered_at, now):
            repo.set_status(
                session, line, LineStatus.PURCHASE_CONFIRMED, "timer:R07", "7 days after delivery"
            )
            n += 1
    return n


async def cancel_unpaid(session: AsyncSession, now: datetime, auto_cancel: bool = True) -> int:
    stmt = select(Order).where(
        Order.paid.is_(False), Order.payment_method == PaymentMethod.BANK_TRANSFER.value
    )
    n = 0
    for order in (await session.execute(stmt)).scalars():
        deadline = order.payment_deadline
        note = "R08 unpaid past deadline"
        if deadline is None and order.mileage_used and order.mileage_used > 0:
            deadline = order.created_at + MILEAGE_UNPAID_CANCEL_AFTER
            note = "R22 unpaid 15 days, mileage returned"
        view = await repo.order_view(session, order)
        if unpaid_order_expired(view, deadline, now, auto_cancel):
            for line in order.lines:
                if LineStatus(line.status) is LineStatus.PAYMENT_WAITING:
                    repo.set_status(session, line, LineStatus.CANCELED, "timer:R08", note)
            n += 1
    return n
