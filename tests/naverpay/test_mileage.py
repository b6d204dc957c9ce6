"""store.mileage: Naver Mileage rules R20, R21, R22."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import mileage as m
from store.errors import RuleViolation

KST_NOON = datetime(2026, 3, 2, 12, 0)


# --- R20 -----------------------------------------------------------------------------------------
def test_r20_minimum_use_is_500_won_and_zero_means_unused() -> None:
    assert m.check_use(0, balance=0, order_amount=10_000) == 0
    assert m.check_use(500, balance=500, order_amount=10_000) == 500
    with pytest.raises(m.MileageRuleError) as info:
        m.check_use(499, balance=10_000, order_amount=10_000)
    assert info.value.rule == "R20"
    assert isinstance(info.value, RuleViolation)


def test_r20_use_is_limited_by_the_balance() -> None:
    with pytest.raises(m.MileageRuleError) as info:
        m.check_use(2000, balance=1999, order_amount=10_000)
    assert info.value.rule == "R20"


def test_r20_earning_is_capped_at_20000_per_order() -> None:
    assert m.earning_amount(1_000_000, Decimal("0.05")) == Decimal(20_000)
    assert m.earning_amount(100_000, Decimal("0.01")) == Decimal(1_000)
    assert m.earning_amount(12_345, Decimal("0.01")) == Decimal(123)  # floored to won


def test_r20_balance_cap_means_use_only() -> None:
    assert m.can_earn(499_999)
    assert not m.can_earn(400_000, pending=100_000)
    assert m.earning_amount(100_000, Decimal("0.1"), balance=500_000) == 0
    assert m.earning_amount(100_000, Decimal("0.1"), balance=495_000) == Decimal(5_000)


# --- R21 -----------------------------------------------------------------------------------------
def test_r21_earning_base_is_purchase_minus_mileage_used() -> None:
    assert m.earning_base(18_000, 3_000) == Decimal(15_000)
    assert m.earning_base(1_000, 3_000) == 0  # never negative


def test_r21_gift_cards_and_gold_are_excluded_from_earning_and_use() -> None:
    assert m.earning_base(30_000, 1_000, excluded_amount=10_000) == Decimal(19_000)
    with pytest.raises(m.MileageRuleError) as info:
        m.check_use(25_000, balance=50_000, order_amount=30_000, excluded_amount=10_000)
    assert info.value.rule == "R21"


def test_r21_shop_may_exclude_its_discounts_and_shipping() -> None:
    assert m.earning_base(20_000, 0, shop_discounts=2_000, shipping=3_000) == Decimal(20_000)
    excluded = m.earning_base(
        20_000,
        0,
        shop_discounts=2_000,
        shipping=3_000,
        exclude_shop_discounts=True,
        exclude_shipping=True,
    )
    assert excluded == Decimal(15_000)


def test_r21_rate_changes_apply_from_a_month_boundary_at_most_monthly() -> None:
    assert m.rate_effective_from(date(2026, 3, 25)) == date(2026, 4, 1)
    assert m.rate_effective_from(date(2026, 3, 26)) == date(2026, 5, 1)
    assert m.rate_effective_from(date(2026, 12, 27)) == date(2027, 2, 1)
    changes = [m.RateChange(Decimal("0.02"), date(2026, 4, 1))]
    assert m.rate_on(changes, date(2026, 3, 31), Decimal("0.01")) == Decimal("0.01")
    assert m.rate_on(changes, date(2026, 4, 1), Decimal("0.01")) == Decimal("0.02")


# --- R22 -----------------------------------------------------------------------------------------
def test_r22_cancel_gives_back_all_used_mileage_and_no_earning() -> None:
    assert m.refund_used_mileage(3_000) == Decimal(3_000)
    assert m.earning_after_return(20_000, 20_000, 3_000, Decimal("0.01")) == 0


def test_r22_partial_returns_never_give_back_more_than_was_used() -> None:
    first = m.refund_used_mileage(3_000, returned_amount=10_000, order_amount=20_000)
    assert first == Decimal(1_500)
    second = m.refund_used_mileage(3_000, already_refunded=first, requested=5_000)
    assert second == Decimal(1_500)  # an operator figure is capped by the rest
    assert m.refund_used_mileage(3_000, already_refunded=3_000, requested=100) == 0


@given(
    used=st.integers(min_value=0, max_value=100_000),
    parts=st.lists(st.integers(min_value=0, max_value=50_000), min_size=1, max_size=6),
)
def test_r22_total_refund_is_capped_by_use_for_any_return_sequence(
    used: int, parts: list[int]
) -> None:
    refunded = Decimal(0)
    for asked in parts:
        refunded += m.refund_used_mileage(used, already_refunded=refunded, requested=asked)
    assert 0 <= refunded <= used


def test_r22_partial_return_keeps_earning_on_the_rest_at_the_original_rate() -> None:
    earned = m.earning_after_return(20_000, 10_000, 2_000, Decimal("0.02"))
    assert earned == Decimal(180)  # (10,000 - 1,000 used share) x 2 %


def test_r22_exchange_up_keeps_the_original_base_exchange_down_uses_the_new() -> None:
    assert m.exchange_earning_base(20_000, 25_000, 1_000) == Decimal(19_000)
    assert m.exchange_earning_base(20_000, 15_000, 1_000) == Decimal(14_000)


def test_r22_used_mileage_returns_only_when_the_refund_completes() -> None:
    assert not m.used_mileage_returnable(paid=True, refund_completed=False)
    assert m.used_mileage_returnable(paid=True, refund_completed=True)
    assert m.used_mileage_returnable(paid=False, refund_completed=False)


def test_r22_fifteen_day_rules() -> None:
    ordered = KST_NOON
    assert not m.unpaid_auto_cancel_due(ordered, ordered + timedelta(days=14, hours=23), paid=False)
    assert m.unpaid_auto_cancel_due(ordered, ordered + timedelta(days=15), paid=False)
    assert not m.unpaid_auto_cancel_due(ordered, ordered + timedelta(days=30), paid=True)
    assert m.earned_usable_at(ordered) == ordered + timedelta(days=15)
