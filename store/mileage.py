"""Naver Mileage arithmetic (R20–R22). Pure functions on won amounts (``Decimal``), no I/O.

Promises:

* amounts are whole won: results are floored to 1 won, never negative;
* a refusal raises :class:`MileageRuleError` (a :class:`store.errors.RuleViolation`) naming the
  rule (``R20`` / ``R21`` / ``R22``);
* nothing here reads a clock: the current time is always an argument.

**decisions** (where the source leaves a choice):

* earning that would push a balance over the 500,000 won cap is cut to the room left under the
  cap; a balance already at or over the cap earns nothing (R20 "over the cap: use only");
* the default refund of used mileage on a partial return is the returned share of the order
  (floored), always capped by what was used and not yet given back (R22);
* a rate change requested before the 26th (00:00 KST) applies from the 1st of the next month;
  later requests apply a month after that (R21 "changed at most monthly").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from store.errors import RuleViolation

MIN_USE = Decimal(500)  # R20
MAX_EARN_PER_ORDER = Decimal(20_000)  # R20
BALANCE_CAP = Decimal(500_000)  # R20
EARNED_USABLE_AFTER = timedelta(days=15)  # R22
UNPAID_CANCEL_AFTER = timedelta(days=15)  # R22
RATE_CUTOFF_DAY = 26  # R21: the rate confirmed on the 26th applies next month

ZERO = Decimal(0)


class MileageRuleError(RuleViolation):
    """A mileage rule refuses the operation."""


def won(value: Decimal | int) -> Decimal:
    """``value`` floored to whole won, never below zero."""
    return max(ZERO, Decimal(value).quantize(Decimal(1), rounding=ROUND_FLOOR))


# --- R20: use and earn limits -------------------------------------------------------------------
def check_use(
    amount: Decimal | int,
    *,
    balance: Decimal | int,
    order_amount: Decimal | int,
    excluded_amount: Decimal | int = 0,
) -> Decimal:
    """The mileage to use on an order, or :class:`MileageRuleError`.

    R20: zero (not used) or at least 500 won, and no more than the usable balance.
    R21: gift cards and gold take no mileage, so at most ``order_amount - excluded_amount``.
    """
    amount = Decimal(amount)
    if amount == 0:
        return ZERO
    if amount < 0:
        raise MileageRuleError("R20", "mileage use cannot be negative")
    if amount < MIN_USE:
        raise MileageRuleError("R20", f"minimum mileage use is {MIN_USE} won, got {amount}")
    if amount > Decimal(balance):
        raise MileageRuleError("R20", f"only {balance} won of mileage is usable")
    payable = Decimal(order_amount) - Decimal(excluded_amount)
    if amount > payable:
        raise MileageRuleError(
            "R21", f"mileage {amount} exceeds the {payable} won that may be paid with it"
        )
    return won(amount)


def can_earn(balance: Decimal | int, pending: Decimal | int = 0) -> bool:
    """R20: usable plus pending mileage at or over 500,000 won → use only."""
    return Decimal(balance) + Decimal(pending) < BALANCE_CAP


def earning_amount(
    base: Decimal | int, rate: Decimal, *, balance: Decimal | int = 0, pending: Decimal | int = 0
) -> Decimal:
    """R20: ``base × rate`` floored, at most 20,000 won per order, cut to the cap room."""
    if rate < 0:
        raise MileageRuleError("R21", "the earning rate cannot be negative")
    room = BALANCE_CAP - Decimal(balance) - Decimal(pending)
    if room <= 0:
        return ZERO
    return won(min(Decimal(base) * rate, MAX_EARN_PER_ORDER, room))


# --- R21: earning base and rate -----------------------------------------------------------------
def earning_base(
    purchase_amount: Decimal | int,
    mileage_used: Decimal | int,
    *,
    excluded_amount: Decimal | int = 0,
    shop_discounts: Decimal | int = 0,
    shipping: Decimal | int = 0,
    exclude_shop_discounts: bool = False,
    exclude_shipping: bool = False,
) -> Decimal:
    """R21: purchase amount − mileage used − gift card/gold amount; the shop may also take out
    its own discounts and shipping (a published choice). Never negative."""
    base = Decimal(purchase_amount) - Decimal(mileage_used) - Decimal(excluded_amount)
    if exclude_shop_discounts:
        base -= Decimal(shop_discounts)
    if exclude_shipping:
        base -= Decimal(shipping)
    return won(base)


def rate_effective_from(requested_at: date | datetime) -> date:
    """R21: the first day a rate change requested at ``requested_at`` (KST) applies."""
    day = requested_at.date() if isinstance(requested_at, datetime) else requested_at
    months = 1 if day.day < RATE_CUTOFF_DAY else 2
    year, month = day.year, day.month + months
    while month > 12:
        year, month = year + 1, month - 12
    return date(year, month, 1)


@dataclass(frozen=True)
class RateChange:
    rate: Decimal
    effective_from: date


def rate_on(changes: list[RateChange], day: date, initial: Decimal) -> Decimal:
    """R21: the one shop-wide rate in force on ``day``."""
    current = initial
    for change in sorted(changes, key=lambda c: c.effective_from):
        if change.effective_from <= day:
            current = change.rate
    return current


# --- R22: cancel, return, exchange --------------------------------------------------------------
def refund_used_mileage(
    used: Decimal | int,
    *,
    already_refunded: Decimal | int = 0,
    requested: Decimal | int | None = None,
    returned_amount: Decimal | int | None = None,
    order_amount: Decimal | int | None = None,
) -> Decimal:
    """R22: used mileage to give back on a cancel/return, never more than was used in total.

    ``requested`` (an operator's figure) is capped; without it a partial return gives back its
    share (``returned_amount / order_amount``) and a full cancel/return the whole remainder.
    """
    remaining = won(Decimal(used) - Decimal(already_refunded))
    if requested is not None:
        if Decimal(requested) < 0:
            raise MileageRuleError("R22", "a mileage refund cannot be negative")
        return min(won(requested), remaining)
    if returned_amount is None or order_amount is None or Decimal(order_amount) <= 0:
        return remaining
    share = Decimal(used) * Decimal(returned_amount) / Decimal(order_amount)
    return min(won(share), remaining)


def earning_after_return(
    order_amount: Decimal | int,
    returned_amount: Decimal | int,
    mileage_used: Decimal | int,
    rate: Decimal,
) -> Decimal:
    """R22: a cancel/return cancels the earning on what went back; the rest earns at the
    original transaction's rate (a full return earns nothing)."""
    kept = Decimal(order_amount) - Decimal(returned_amount)
    if kept <= 0:
        return ZERO
    used_kept = Decimal(mileage_used) * kept / Decimal(order_amount)
    return earning_amount(earning_base(kept, used_kept), rate)


def exchange_earning_base(
    original_amount: Decimal | int, new_amount: Decimal | int, mileage_used: Decimal | int
) -> Decimal:
    """R22: an exchange that raises the amount keeps earning on the original amount; one that
    lowers it earns on the new amount."""
    amount = min(Decimal(original_amount), Decimal(new_amount))
    return earning_base(amount, mileage_used)


def used_mileage_returnable(paid: bool, refund_completed: bool) -> bool:
    """R22: a paid order's used mileage goes back only once its refund is completed; an unpaid
    order's at once."""
    return refund_completed or not paid


def unpaid_auto_cancel_due(ordered_at: datetime, now: datetime, *, paid: bool) -> bool:
    """R22: an unpaid bank transfer is cancelled (with its mileage) after 15 days."""
    return not paid and now - ordered_at >= UNPAID_CANCEL_AFTER


def earned_usable_at(paid_at: datetime) -> datetime:
    """R22: earned mileage becomes usable 15 days after payment (delivery or not)."""
    return paid_at + EARNED_USABLE_AFTER
