"""Moves the daemons make by themselves: R06 (pickup -> shipping), R07 (purchase confirmation
7 days after delivery), R08 (unpaid bank transfers cancelled at their deadline, never resumed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.domain import (
    PICKUP_OR_LATER,
    Channel,
    LineStatus,
    PaymentMethod,
    ProductKind,
    TrackingState,
)
from store.errors import TransitionError
from store.state_machine import (
    AUTO_CONFIRM_AFTER,
    LineView,
    OrderView,
    check_transition,
    pickup_moves_to_shipping,
    purchase_confirmation_due,
    unpaid_order_expired,
)

S = LineStatus
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


# --- R06 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tracking", list(TrackingState))
def test_r06_pickup_or_later_scan_moves_ready_line_to_shipping(tracking: TrackingState) -> None:
    """R06: a READY_TO_SHIP line with a valid invoice moves on the pickup scan or any later
    one, and the move then passes check_transition; no scan / an exception scan does not."""
    line = LineView("L1", S.READY_TO_SHIP, 1, has_invoice=True)
    due = pickup_moves_to_shipping(line, tracking)
    assert due is (tracking in PICKUP_OR_LATER)
    if due:
        order = OrderView("O1", Channel.NAVERPAY, PaymentMethod.CARD, (line,))
        check_transition(order, line, S.SHIPPING)


def test_r06_no_move_without_a_valid_invoice_or_outside_ready_to_ship() -> None:
    """R06: no invoice, an invalid invoice, or a line already shipping: nothing to do."""
    line = LineView("L1", S.READY_TO_SHIP, 1, has_invoice=True)
    assert not pickup_moves_to_shipping(replace(line, has_invoice=False), TrackingState.PICKED_UP)
    assert not pickup_moves_to_shipping(line, TrackingState.PICKED_UP, invoice_valid=False)
    for status in (S.SHIPPING, S.PREPARING, S.CANCEL_REQUESTED):
        assert not pickup_moves_to_shipping(replace(line, status=status), TrackingState.IN_TRANSIT)


# --- R07 ------------------------------------------------------------------------------------


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_r07_confirmation_due_exactly_from_seven_days_after_delivery(elapsed: timedelta) -> None:
    """R07: a delivered ordinary line is due for automatic confirmation iff >= 7 days passed."""
    line = LineView("L1", S.DELIVERED, 1)
    assert purchase_confirmation_due(line, T0, T0 + elapsed) is (elapsed >= timedelta(days=7))


def test_r07_boundary_and_the_move_it_triggers() -> None:
    """R07: one second short of 7 days is not due, 7 days is; the move is then allowed."""
    assert AUTO_CONFIRM_AFTER == timedelta(days=7)
    line = LineView("L1", S.DELIVERED, 1, kind=ProductKind.NO_DELIVERY)
    assert not purchase_confirmation_due(line, T0, T0 + timedelta(days=7, seconds=-1))
    assert purchase_confirmation_due(line, T0, T0 + timedelta(days=7))
    order = OrderView("O1", Channel.OMS, PaymentMethod.CARD, (line,))
    check_transition(order, line, S.PURCHASE_CONFIRMED)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (S.SHIPPING, ProductKind.PARCEL),
        (S.PURCHASE_CONFIRMED, ProductKind.PARCEL),
        (S.RETURN_REQUESTED, ProductKind.PARCEL),
        (S.DELIVERED, ProductKind.DIGITAL),
        (S.DELIVERED, ProductKind.MEMBERSHIP),
    ],
)
def test_r07_only_delivered_ordinary_goods_are_auto_confirmed(
    status: LineStatus, kind: ProductKind
) -> None:
    """R07: not delivered, already confirmed, in a return, or digital: never due."""
    line = LineView("L1", status, 1, kind=kind)
    assert not purchase_confirmation_due(line, T0, T0 + timedelta(days=60))


def test_r07_mixing_naive_and_aware_datetimes_is_refused() -> None:
    """R07: a naive and an aware datetime cannot be compared safely."""
    line = LineView("L1", S.DELIVERED, 1)
    with pytest.raises(ValueError, match="naive"):
        purchase_confirmation_due(line, T0.replace(tzinfo=None), T0 + timedelta(days=8))


# --- R08 ------------------------------------------------------------------------------------


def unpaid(method: PaymentMethod = PaymentMethod.BANK_TRANSFER, paid: bool = False) -> OrderView:
    line = LineView("L1", S.PAYMENT_WAITING if not paid else S.PREPARING, 1)
    return OrderView("O1", Channel.OMS, method, (line,), paid=paid)


def test_r08_unpaid_bank_transfer_expires_after_deadline_and_cannot_resume() -> None:
    """R08: past its deadline an unpaid bank transfer is cancelled automatically; the cancelled
    order cannot be resumed, and once cancelled it is no longer reported as expiring."""
    order = unpaid()
    deadline = T0 + timedelta(days=3)
    assert not unpaid_order_expired(order, deadline, deadline)
    assert unpaid_order_expired(order, deadline, deadline + timedelta(seconds=1))
    line = order.lines[0]
    check_transition(order, line, S.CANCELED)
    cancelled = replace(order, lines=(replace(line, status=S.CANCELED),))
    assert not unpaid_order_expired(cancelled, deadline, deadline + timedelta(days=1))
    with pytest.raises(TransitionError) as err:
        check_transition(cancelled, cancelled.lines[0], S.PREPARING)
    assert err.value.rule == "R08"


def test_r08_no_auto_cancel_when_setting_off_or_no_deadline() -> None:
    """R08: the shop's auto-cancel setting off, or no deadline, means no expiry."""
    late = T0 + timedelta(days=30)
    assert not unpaid_order_expired(unpaid(), T0, late, auto_cancel=False)
    assert not unpaid_order_expired(unpaid(), None, late)


@pytest.mark.parametrize(
    "method", [m for m in PaymentMethod if m is not PaymentMethod.BANK_TRANSFER]
)
def test_r08_only_bank_transfers_expire(method: PaymentMethod) -> None:
    """R08: the rule covers bank transfers (무통장입금) only."""
    assert not unpaid_order_expired(unpaid(method), T0, T0 + timedelta(days=30))


def test_r08_paid_order_never_expires() -> None:
    """R08: a paid bank transfer is not cancelled whatever the clock says."""
    assert not unpaid_order_expired(unpaid(paid=True), T0, T0 + timedelta(days=30))
