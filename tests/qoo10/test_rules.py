"""Pure Qoo10 decisions: R04, R23, R24, R25."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.qoo10.codes import CANCEL_REASON_CODES, ShippingStatus
from connectors.qoo10.errors import SellerCancelRefusedError
from connectors.qoo10.rules import (
    BUYER_FAULT_REASONS,
    SELLER_FAULT_REASONS,
    BuyerCancelOutcome,
    CancelPath,
    OrderFacts,
    buyer_cancel_outcome,
    check_dispatch_allowed,
    check_whole_quantity,
    plan_seller_cancel,
)
from store.errors import OpenClaimError, SplitNotAllowedError

REASONS = sorted(SELLER_FAULT_REASONS | BUYER_FAULT_REASONS | {"OTHER"})


@given(
    reason=st.sampled_from(REASONS),
    status=st.sampled_from(list(ShippingStatus)),
    open_request=st.booleans(),
)
def test_r23_r24_plan_never_breaks_the_rules(
    reason: str, status: ShippingStatus, open_request: bool
) -> None:
    facts = OrderFacts(status, open_cancel_request=open_request)
    try:
        plan = plan_seller_cancel("1", reason, facts)
    except SellerCancelRefusedError as exc:
        assert exc.rule in ("R23", "R24")
        return
    if facts.dispatched:
        assert (plan.path, reason) == (CancelPath.REFUND_AFTER_DISPATCH, "DELAYED_DELIVERY")
    elif reason in BUYER_FAULT_REASONS:
        assert open_request and plan.cancel_reason_code == "1"
    else:
        assert reason in SELLER_FAULT_REASONS
        assert plan.cancel_reason_code == CANCEL_REASON_CODES[reason] != "1"


def test_r23_cancelled_order_needs_nothing() -> None:
    plan = plan_seller_cancel("1", "OTHER", OrderFacts(ShippingStatus.PREPARED, canceled=True))
    assert plan.path == CancelPath.ALREADY_CANCELED


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (ShippingStatus.WAITING, BuyerCancelOutcome.CANCELED),
        (ShippingStatus.REQUESTED, BuyerCancelOutcome.CANCELED),
        (ShippingStatus.PREPARED, BuyerCancelOutcome.REQUESTED),
        (ShippingStatus.SHIPPING, BuyerCancelOutcome.REFUSED),
        (ShippingStatus.DELIVERED, BuyerCancelOutcome.REFUSED),
    ],
)
def test_r25_buyer_cancel_outcome(status: ShippingStatus, outcome: BuyerCancelOutcome) -> None:
    assert buyer_cancel_outcome(status) == outcome


def test_r25_open_request_blocks_dispatch() -> None:
    check_dispatch_allowed("1", OrderFacts(ShippingStatus.PREPARED))
    with pytest.raises(OpenClaimError) as caught:
        check_dispatch_allowed("1", OrderFacts(ShippingStatus.PREPARED, open_cancel_request=True))
    assert caught.value.rule == "R25"


@given(ordered=st.integers(1, 50), requested=st.integers(0, 60))
def test_r04_only_the_whole_quantity_passes(ordered: int, requested: int) -> None:
    if requested == ordered:
        check_whole_quantity("1", requested, ordered)
    else:
        with pytest.raises(SplitNotAllowedError) as caught:
            check_whole_quantity("1", requested, ordered)
        assert caught.value.rule == "R04" and "qoo10" in caught.value.message
