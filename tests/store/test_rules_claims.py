"""Claims: R09 (no cancel once an invoice exists), returns, R10 (exchange: collected then
approved, fee modes), R11 (virtual-account refunds are whole), R12's dispatch gate."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.domain import (
    FINAL_STATUSES,
    Channel,
    ClaimStatus,
    ExchangeFeeMode,
    LineStatus,
    PaymentMethod,
    ProductKind,
)
from store.errors import (
    HoldActiveError,
    InvoiceNotAllowedError,
    PartialRefundError,
    RuleViolation,
    TransitionError,
)
from store.state_machine import (
    LineView,
    OrderView,
    check_cancel,
    check_dispatch_allowed,
    check_exchange_approve,
    check_exchange_collect,
    check_exchange_request,
    check_refund,
    check_return,
    check_transition,
)

S = LineStatus


def make(
    status: LineStatus,
    *,
    has_invoice: bool = False,
    kind: ProductKind = ProductKind.PARCEL,
    claim: ClaimStatus | None = None,
    method: PaymentMethod = PaymentMethod.CARD,
    total_paid: str = "30000",
    refunded: str = "0",
    on_hold: bool = False,
) -> tuple[OrderView, LineView]:
    line = LineView("L1", status, 3, kind, has_invoice, claim_status=claim)
    order = OrderView(
        "O1",
        Channel.OMS,
        method,
        (line,),
        on_hold=on_hold,
        total_paid=Decimal(total_paid),
        refunded=Decimal(refunded),
    )
    return order, line


# --- R09 cancels --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.PAYMENT_WAITING, S.PREPARING, S.READY_TO_SHIP])
def test_r09_cancel_allowed_before_any_invoice(status: LineStatus) -> None:
    """R09: unpaid, preparing and ready-to-ship lines without an invoice can be cancelled."""
    order, line = make(status)
    check_cancel(order, line)
    check_transition(order, line, S.CANCEL_REQUESTED)
    check_transition(order, line, S.CANCELED)


@pytest.mark.parametrize("status", [S.SHIPPING, S.DELIVERED])
def test_r09_cancel_refused_from_shipping_on_return_possible(status: LineStatus) -> None:
    """R09: from SHIPPING on a cancel is refused and the error says a return is possible."""
    order, line = make(status, has_invoice=True)
    with pytest.raises(InvoiceNotAllowedError, match="a return is possible") as err:
        check_cancel(order, line)
    assert err.value.rule == "R09"
    check_return(order, line)


def test_r09_cancel_refused_once_invoice_attached_until_deleted() -> None:
    """R09: in READY_TO_SHIP a cancel is refused while an invoice is attached; deleting the
    invoice makes it possible."""
    order, line = make(S.READY_TO_SHIP, has_invoice=True)
    with pytest.raises(InvoiceNotAllowedError, match="delete the invoice first") as err:
        check_cancel(order, line)
    assert err.value.rule == "R09"
    check_cancel(order, replace(line, has_invoice=False))


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_r09_cancel_refused_for_final_statuses(status: LineStatus) -> None:
    """R09: a final line has nothing to cancel."""
    order, line = make(status)
    with pytest.raises(TransitionError, match="final") as err:
        check_cancel(order, line)
    assert err.value.rule == "R09"


def test_r09_confirmed_digital_line_must_be_resumed_before_cancel() -> None:
    """R02/R09: a digital line is final at payment; the error says it must be resumed first."""
    order, line = make(S.PURCHASE_CONFIRMED, kind=ProductKind.DIGITAL)
    with pytest.raises(TransitionError, match="resumed") as err:
        check_cancel(order, line)
    assert err.value.rule == "R09"


@pytest.mark.parametrize("status", [S.RETURN_REQUESTED, S.RETURN_HELD, S.EXCHANGE_REQUESTED])
def test_r09_cancel_refused_during_a_return_or_exchange(status: LineStatus) -> None:
    """R09: a line in a return or exchange was shipped: no cancel."""
    order, line = make(status, has_invoice=True)
    with pytest.raises(InvoiceNotAllowedError) as err:
        check_cancel(order, line)
    assert err.value.rule == "R09"


def test_r09_cancel_request_can_complete() -> None:
    """R09: a line already CANCEL_REQUESTED may be cancelled (the approval)."""
    order, line = make(S.CANCEL_REQUESTED)
    check_cancel(order, line)
    check_transition(order, line, S.CANCELED)


# --- returns --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.PAYMENT_WAITING, S.PREPARING, S.READY_TO_SHIP])
def test_r09_return_refused_before_shipping_cancel_instead(status: LineStatus) -> None:
    """R09: returns exist only from SHIPPING/DELIVERED; before that the answer is a cancel."""
    order, line = make(status)
    with pytest.raises(TransitionError, match="cancel it instead") as err:
        check_return(order, line)
    assert err.value.rule == "R09"


@pytest.mark.parametrize("status", [*sorted(FINAL_STATUSES), S.RETURN_REQUESTED])
def test_r09_return_refused_for_final_or_already_open(status: LineStatus) -> None:
    """R09: a final line, or one already in a return, cannot open a return."""
    order, line = make(status)
    with pytest.raises(TransitionError) as err:
        check_return(order, line)
    assert err.value.rule == "R09"


def test_r02_digital_goods_are_not_returned() -> None:
    """R02: digital goods are never shipped, hence never returned by the buyer."""
    order, line = make(S.DELIVERED, kind=ProductKind.DIGITAL)
    with pytest.raises(TransitionError) as err:
        check_return(order, line)
    assert err.value.rule == "R02"


# --- R10 exchanges --------------------------------------------------------------------------


def test_r10_exchange_flow_requested_collected_approved() -> None:
    """R10: request from DELIVERED, collect, approve: the plan re-ships the same quantity in
    PREPARING and the original line ends EXCHANGED."""
    order, line = make(S.DELIVERED)
    check_exchange_request(order, line)
    requested = replace(line, status=S.EXCHANGE_REQUESTED, claim_status=ClaimStatus.REQUESTED)
    check_exchange_collect(order, requested)
    collected = replace(requested, claim_status=ClaimStatus.COLLECTED)
    plan = check_exchange_approve(order, collected, ExchangeFeeMode.NONE, Decimal(0))
    assert (plan.order_id, plan.line_id) == ("O1", "L1")
    assert plan.reship_quantity == line.quantity == 3
    assert plan.reship_kind is ProductKind.PARCEL
    assert plan.reship_status is S.PREPARING
    assert plan.original_status is S.EXCHANGED
    assert plan.refund_deduction == plan.extra_charge == 0


@pytest.mark.parametrize("claim", [None, ClaimStatus.REQUESTED, ClaimStatus.HELD])
def test_r10_exchange_not_approved_before_collection(claim: ClaimStatus | None) -> None:
    """R10: approval comes after collection."""
    order, line = make(S.EXCHANGE_REQUESTED, claim=claim)
    with pytest.raises(TransitionError, match="collect the item first") as err:
        check_exchange_approve(order, line, ExchangeFeeMode.NONE, Decimal(0))
    assert err.value.rule == "R10"


@pytest.mark.parametrize("status", [S.PREPARING, S.DELIVERED, S.EXCHANGED])
def test_r10_exchange_approval_needs_an_open_exchange(status: LineStatus) -> None:
    """R10: only an EXCHANGE_REQUESTED line can be collected or approved."""
    order, line = make(status, claim=ClaimStatus.COLLECTED)
    with pytest.raises(TransitionError) as err:
        check_exchange_approve(order, line, ExchangeFeeMode.NONE, Decimal(0))
    assert err.value.rule == "R10"
    with pytest.raises(TransitionError):
        check_exchange_collect(order, line)


def test_r10_exchange_collected_twice_refused() -> None:
    """R10: an exchange already collected is not collected again."""
    order, line = make(S.EXCHANGE_REQUESTED, claim=ClaimStatus.COLLECTED)
    with pytest.raises(TransitionError, match="already collected"):
        check_exchange_collect(order, line)


@pytest.mark.parametrize("status", [S.PREPARING, S.READY_TO_SHIP, S.RETURN_REQUESTED])
def test_r10_exchange_request_only_after_shipping(status: LineStatus) -> None:
    """R10: an exchange is opened from SHIPPING or DELIVERED only."""
    order, line = make(status)
    with pytest.raises(TransitionError) as err:
        check_exchange_request(order, line)
    assert err.value.rule == "R10"


@given(
    mode=st.sampled_from(list(ExchangeFeeMode)),
    fee=st.decimals(min_value=-5000, max_value=50000, places=0),
)
def test_r10_fee_modes_settle_the_fee_exactly_once(mode: ExchangeFeeMode, fee: Decimal) -> None:
    """R10: deduct takes the fee off the refund (at most what is refundable), charge bills it,
    none moves no money; a negative fee is refused."""
    order, line = make(S.EXCHANGE_REQUESTED, claim=ClaimStatus.COLLECTED, total_paid="30000")
    refused = (
        fee < 0
        or (mode is ExchangeFeeMode.NONE and fee != 0)
        or (mode is ExchangeFeeMode.DEDUCT and fee > Decimal(30000))
    )
    if refused:
        with pytest.raises(RuleViolation) as err:
            check_exchange_approve(order, line, mode, fee)
        assert err.value.rule == "R10"
        return
    plan = check_exchange_approve(order, line, mode, fee)
    assert plan.fee_mode is mode and plan.fee == fee
    assert plan.refund_deduction == (fee if mode is ExchangeFeeMode.DEDUCT else 0)
    assert plan.extra_charge == (fee if mode is ExchangeFeeMode.CHARGE else 0)


# --- R11 refunds ----------------------------------------------------------------------------


def test_r11_virtual_account_refund_whole_accepted() -> None:
    """R11: a virtual-account order is refunded in full (what is left of it)."""
    order, _ = make(S.CANCELED, method=PaymentMethod.VIRTUAL_ACCOUNT)
    check_refund(order, Decimal("30000"))
    order, _ = make(
        S.CANCELED, method=PaymentMethod.VIRTUAL_ACCOUNT, total_paid="30000", refunded="5000"
    )
    check_refund(order, Decimal("25000"))


def test_r11_virtual_account_partial_refund_refused_clearly() -> None:
    """R11: a partial virtual-account refund raises PartialRefundError naming the whole."""
    order, _ = make(S.CANCELED, method=PaymentMethod.VIRTUAL_ACCOUNT)
    with pytest.raises(PartialRefundError, match="only whole") as err:
        check_refund(order, Decimal("10000"))
    assert err.value.rule == "R11"
    assert "30000" in err.value.message


@given(
    method=st.sampled_from(list(PaymentMethod)),
    amount=st.decimals(min_value=-100, max_value=40000, places=2),
)
def test_r11_refund_amount_property(method: PaymentMethod, amount: Decimal) -> None:
    """R11: any method refunds 0 < amount <= refundable; a virtual account only the whole."""
    order, _ = make(S.CANCELED, method=method, total_paid="30000", refunded="1000")
    refundable = Decimal(29000)
    if amount <= 0 or amount > refundable:
        with pytest.raises(RuleViolation) as err:
            check_refund(order, amount)
        assert err.value.rule == "R11"
        assert not isinstance(err.value, PartialRefundError)
    elif method is PaymentMethod.VIRTUAL_ACCOUNT and amount != refundable:
        with pytest.raises(PartialRefundError):
            check_refund(order, amount)
    else:
        check_refund(order, amount)


def test_r11_non_finite_refund_refused() -> None:
    """R11: NaN or infinity is not an amount."""
    order, _ = make(S.CANCELED)
    for bad in (Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(RuleViolation) as err:
            check_refund(order, bad)
        assert err.value.rule == "R11"


# --- R12 dispatch gate ----------------------------------------------------------------------


def test_r12_dispatch_refused_while_on_hold() -> None:
    """R12: a held order pushes no dispatch; released, it may."""
    order, _ = make(S.READY_TO_SHIP, has_invoice=True, on_hold=True)
    with pytest.raises(HoldActiveError) as err:
        check_dispatch_allowed(order)
    assert err.value.rule == "R12"
    check_dispatch_allowed(replace(order, on_hold=False))
