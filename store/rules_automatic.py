"""The moves the daemons make by themselves: pickup → shipping (R06), automatic purchase
confirmation (R07) and the cancellation of unpaid bank transfers (R08).

Pure predicates: each says whether the move is due now; the caller then checks the move with
:func:`store.state_machine.check_transition` and writes it. A predicate is ``False`` once the move
has been made, so a timer that fires twice does nothing the second time. Datetimes must be all
timezone-aware or all naive (mixing raises ``ValueError``). Import them from
:mod:`store.state_machine`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from store.domain import PICKUP_OR_LATER, LineStatus, PaymentMethod, TrackingState
from store.rules_views import SHIPPABLE_KINDS, LineView, OrderView

#: R07: ordinary goods are purchase-confirmed this long after delivery.
AUTO_CONFIRM_AFTER = timedelta(days=7)


def _same_clock(a: datetime, b: datetime) -> None:
    if (a.tzinfo is None) != (b.tzinfo is None):
        raise ValueError(f"cannot compare a naive and an aware datetime: {a!r}, {b!r}")


def pickup_moves_to_shipping(
    line: LineView, tracking: TrackingState, invoice_valid: bool = True
) -> bool:
    """R06: the line moves to ``SHIPPING`` by itself (and the dispatch is pushed, subject to
    R12/R29) when it is ``READY_TO_SHIP`` with a valid invoice and the carrier shows the pickup
    scan or any later one. ``False`` otherwise, including once the line is ``SHIPPING``."""
    return (
        line.status is LineStatus.READY_TO_SHIP
        and line.has_invoice
        and invoice_valid
        and tracking in PICKUP_OR_LATER
    )


def purchase_confirmation_due(line: LineView, delivered_at: datetime, now: datetime) -> bool:
    """R07: an ordinary-goods line ``DELIVERED`` at ``delivered_at`` is confirmed automatically
    once :data:`AUTO_CONFIRM_AFTER` has passed (at exactly 7 days it is due). Digital goods and
    memberships were confirmed at payment; any other status is not due."""
    _same_clock(delivered_at, now)
    return (
        line.status is LineStatus.DELIVERED
        and line.kind in SHIPPABLE_KINDS
        and now - delivered_at >= AUTO_CONFIRM_AFTER
    )


def unpaid_order_expired(
    order: OrderView, deadline: datetime | None, now: datetime, auto_cancel: bool = True
) -> bool:
    """R08: a bank-transfer order still unpaid after its payment ``deadline`` is to be cancelled
    automatically, when the shop's ``auto_cancel`` setting is on.

    ``False`` for any other payment method, a paid order, no deadline, the setting off, ``now``
    not past the deadline, or an order with no line left in ``PAYMENT_WAITING`` (already done).
    Once cancelled the order cannot be resumed (see ``check_transition``)."""
    if deadline is None:
        return False
    _same_clock(deadline, now)
    return (
        auto_cancel
        and order.payment_method is PaymentMethod.BANK_TRANSFER
        and not order.paid
        and now > deadline
        and any(ln.status is LineStatus.PAYMENT_WAITING for ln in order.lines)
    )
