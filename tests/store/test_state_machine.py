"""Status moves: R01 (stepwise, back moves), R02 (exceptions), R05 (SHIPPING needs an invoice),
R08 (unpaid cancel is final) and the transition table itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.domain import (
    FINAL_STATUSES,
    FORWARD_PATH,
    Channel,
    ClaimStatus,
    LineStatus,
    PaymentMethod,
    ProductKind,
)
from store.errors import InvoiceNotAllowedError, RuleViolation, TransitionError
from store.state_machine import (
    TRANSITIONS,
    LineView,
    OrderView,
    allowed_targets,
    check_transition,
    initial_status,
    render_transition_table,
    transition_table,
)

S = LineStatus


def make(
    status: LineStatus,
    *,
    kind: ProductKind = ProductKind.PARCEL,
    channel: Channel = Channel.OMS,
    has_invoice: bool = False,
    told: frozenset[LineStatus] = frozenset(),
    claim: ClaimStatus | None = None,
    paid: bool = True,
    method: PaymentMethod = PaymentMethod.CARD,
) -> tuple[OrderView, LineView]:
    line = LineView("L1", status, 2, kind, has_invoice, told, claim)
    order = OrderView("O1", channel, method, (line,), paid=paid)
    return order, line


#: The moves a parcel line may make when every guard is satisfied, written out independently of
#: store.state_machine.TRANSITIONS so that a change to the table has to be made twice.
PARCEL_MOVES = {
    (S.PAYMENT_WAITING, S.PREPARING),
    (S.PAYMENT_WAITING, S.CANCEL_REQUESTED),
    (S.PAYMENT_WAITING, S.CANCELED),
    (S.PREPARING, S.READY_TO_SHIP),
    (S.READY_TO_SHIP, S.SHIPPING),
    (S.SHIPPING, S.DELIVERED),
    (S.DELIVERED, S.PURCHASE_CONFIRMED),
    (S.READY_TO_SHIP, S.PREPARING),
    (S.SHIPPING, S.READY_TO_SHIP),
    (S.DELIVERED, S.SHIPPING),
    (S.PREPARING, S.CANCEL_REQUESTED),
    (S.PREPARING, S.CANCELED),
    (S.READY_TO_SHIP, S.CANCEL_REQUESTED),
    (S.READY_TO_SHIP, S.CANCELED),
    (S.CANCEL_REQUESTED, S.CANCELED),
    (S.CANCEL_REQUESTED, S.PAYMENT_WAITING),
    (S.CANCEL_REQUESTED, S.PREPARING),
    (S.CANCEL_REQUESTED, S.READY_TO_SHIP),
    (S.SHIPPING, S.RETURN_REQUESTED),
    (S.SHIPPING, S.RETURNED),
    (S.DELIVERED, S.RETURN_REQUESTED),
    (S.DELIVERED, S.RETURNED),
    (S.RETURN_REQUESTED, S.RETURN_HELD),
    (S.RETURN_HELD, S.RETURN_REQUESTED),
    (S.RETURN_REQUESTED, S.RETURNED),
    (S.RETURN_HELD, S.RETURNED),
    (S.RETURN_REQUESTED, S.SHIPPING),
    (S.RETURN_REQUESTED, S.DELIVERED),
    (S.RETURN_HELD, S.SHIPPING),
    (S.RETURN_HELD, S.DELIVERED),
    (S.SHIPPING, S.EXCHANGE_REQUESTED),
    (S.DELIVERED, S.EXCHANGE_REQUESTED),
    (S.EXCHANGE_REQUESTED, S.EXCHANGED),
    (S.EXCHANGE_REQUESTED, S.SHIPPING),
    (S.EXCHANGE_REQUESTED, S.DELIVERED),
}
NO_DELIVERY_MOVES = PARCEL_MOVES | {(S.PREPARING, S.DELIVERED), (S.DELIVERED, S.PREPARING)}
DIGITAL_MOVES = {
    (S.PAYMENT_WAITING, S.PURCHASE_CONFIRMED),
    (S.PREPARING, S.PURCHASE_CONFIRMED),
    (S.PAYMENT_WAITING, S.CANCEL_REQUESTED),
    (S.PAYMENT_WAITING, S.CANCELED),
    (S.PREPARING, S.CANCEL_REQUESTED),
    (S.PREPARING, S.CANCELED),
    (S.READY_TO_SHIP, S.CANCEL_REQUESTED),
    (S.READY_TO_SHIP, S.CANCELED),
    (S.CANCEL_REQUESTED, S.CANCELED),
    (S.CANCEL_REQUESTED, S.PAYMENT_WAITING),
    (S.CANCEL_REQUESTED, S.PREPARING),
    (S.CANCEL_REQUESTED, S.READY_TO_SHIP),
}
EXPECTED = {
    ProductKind.PARCEL: PARCEL_MOVES,
    ProductKind.NO_DELIVERY: NO_DELIVERY_MOVES,
    ProductKind.DIGITAL: DIGITAL_MOVES,
    ProductKind.MEMBERSHIP: DIGITAL_MOVES,
}
RULES_OF_MOVES = {"R01", "R02", "R05", "R08", "R09", "R10"}


def permissive(kind: ProductKind, a: LineStatus, b: LineStatus) -> tuple[OrderView, LineView]:
    """A line whose guards all pass for a -> b: an invoice only when shipping, item collected."""
    return make(a, kind=kind, has_invoice=(b is S.SHIPPING), claim=ClaimStatus.COLLECTED)


@pytest.mark.parametrize("kind", list(ProductKind))
@pytest.mark.parametrize("a", list(LineStatus))
def test_r01_r02_exactly_the_listed_moves_are_allowed(kind: ProductKind, a: LineStatus) -> None:
    """R01/R02: with every guard satisfied, a move is accepted iff it is listed for the kind;
    anything else is refused with a TransitionError naming a lifecycle rule."""
    for b in LineStatus:
        order, line = permissive(kind, a, b)
        if a is b or (a, b) in EXPECTED[kind]:
            check_transition(order, line, b)
            continue
        with pytest.raises(RuleViolation) as err:
            check_transition(order, line, b)
        assert err.value.rule in RULES_OF_MOVES, (a, b, err.value)


@given(st.sampled_from(FORWARD_PATH), st.sampled_from(FORWARD_PATH), st.booleans(), st.booleans())
def test_r01_any_forward_path_pair_not_one_step_apart_is_refused(
    a: LineStatus, b: LineStatus, has_invoice: bool, told: bool
) -> None:
    """R01: between statuses of the forward path only one step forward or back is possible."""
    notified = frozenset({a}) if told else frozenset()
    order, line = make(a, has_invoice=has_invoice, told=notified)
    gap = FORWARD_PATH.index(b) - FORWARD_PATH.index(a)
    if abs(gap) >= 2:
        with pytest.raises(TransitionError) as err:
            check_transition(order, line, b)
        assert err.value.rule == "R01"
        expected = "skips a step" if gap > 0 else "more than one step"
        if a is S.PURCHASE_CONFIRMED:
            expected = "final status"
        assert expected in err.value.message


@given(
    kind=st.sampled_from(list(ProductKind)),
    a=st.sampled_from(list(LineStatus)),
    b=st.sampled_from(list(LineStatus)),
    channel=st.sampled_from(list(Channel)),
    has_invoice=st.booleans(),
    told=st.frozensets(st.sampled_from(list(LineStatus))),
    claim=st.none() | st.sampled_from(list(ClaimStatus)),
    paid=st.booleans(),
)
def test_r01_guards_only_ever_restrict_the_listed_moves(
    kind: ProductKind,
    a: LineStatus,
    b: LineStatus,
    channel: Channel,
    has_invoice: bool,
    told: frozenset[LineStatus],
    claim: ClaimStatus | None,
    paid: bool,
) -> None:
    """R01–R10: whatever the flags, an accepted move is a listed one, and a refusal is a
    RuleViolation naming one of the rules that govern moves."""
    order, line = make(
        a, kind=kind, channel=channel, has_invoice=has_invoice, told=told, claim=claim, paid=paid
    )
    try:
        check_transition(order, line, b)
    except RuleViolation as err:
        assert err.rule in RULES_OF_MOVES
        assert f"[{err.rule}]" in str(err)
    else:
        assert a is b or (a, b) in EXPECTED[kind]


def test_r01_back_one_step_allowed_while_channel_not_told() -> None:
    """R01: an operator may step back while the marketplace has not been told."""
    order, line = make(S.SHIPPING, channel=Channel.NAVERPAY, has_invoice=True)
    check_transition(order, line, S.READY_TO_SHIP)


def test_r01_back_move_refused_once_channel_told_of_dispatch() -> None:
    """R01: once Naver was told the line is shipping, moving it back is refused."""
    order, line = make(
        S.SHIPPING, channel=Channel.NAVERPAY, has_invoice=True, told=frozenset({S.SHIPPING})
    )
    with pytest.raises(TransitionError) as err:
        check_transition(order, line, S.READY_TO_SHIP)
    assert err.value.rule == "R01"
    assert "naverpay" in err.value.message


def test_r01_back_move_from_delivered_allowed_when_only_shipping_was_told() -> None:
    """R01: the channel knows SHIPPING but not DELIVERED, so DELIVERED -> SHIPPING stays open,
    while a later told status (DELIVERED) closes it."""
    order, line = make(S.DELIVERED, channel=Channel.QOO10, told=frozenset({S.SHIPPING}))
    check_transition(order, line, S.SHIPPING)
    told = replace(line, channel_notified=frozenset({S.SHIPPING, S.DELIVERED}))
    with pytest.raises(TransitionError, match="cannot move back") as err:
        check_transition(order, told, S.SHIPPING)
    assert err.value.rule == "R01"


def test_r01_back_to_preparing_refused_while_invoice_attached() -> None:
    """R01/R05: a line with an invoice cannot return to PREPARING (invoices live in
    READY_TO_SHIP); deleting the invoice makes the move possible."""
    order, line = make(S.READY_TO_SHIP, has_invoice=True)
    with pytest.raises(InvoiceNotAllowedError) as err:
        check_transition(order, line, S.PREPARING)
    assert err.value.rule == "R05"
    check_transition(order, replace(line, has_invoice=False), S.PREPARING)


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_r01_final_statuses_do_not_move(final: LineStatus) -> None:
    """R01: a final status (paid order) moves nowhere, not even one step back."""
    order, line = make(final)
    for target in LineStatus:
        if target is final:
            continue
        with pytest.raises(TransitionError) as err:
            check_transition(order, line, target)
        assert err.value.rule == "R01"
        assert "final" in err.value.message


def test_r01_same_status_is_accepted_as_a_no_op() -> None:
    """R01: re-applying the current status is harmless (idempotent re-delivery)."""
    for status in LineStatus:
        order, line = make(status)
        check_transition(order, line, status)


def test_r05_shipping_needs_an_invoice_for_parcel_lines() -> None:
    """R05/R06: READY_TO_SHIP -> SHIPPING needs an invoice on a parcel line."""
    order, line = make(S.READY_TO_SHIP)
    with pytest.raises(TransitionError) as err:
        check_transition(order, line, S.SHIPPING)
    assert err.value.rule == "R05"
    check_transition(order, replace(line, has_invoice=True), S.SHIPPING)


def test_r02_no_delivery_line_goes_preparing_to_delivered_without_invoice() -> None:
    """R02: a no-delivery line may skip to DELIVERED and needs no invoice to ship either."""
    order, line = make(S.PREPARING, kind=ProductKind.NO_DELIVERY)
    check_transition(order, line, S.DELIVERED)
    order, line = make(S.READY_TO_SHIP, kind=ProductKind.NO_DELIVERY)
    check_transition(order, line, S.SHIPPING)


def test_r02_parcel_line_cannot_take_the_no_delivery_shortcut() -> None:
    """R01/R02: the shortcut is for no-delivery lines only; for a parcel it skips steps."""
    order, line = make(S.PREPARING, has_invoice=True)
    with pytest.raises(TransitionError) as err:
        check_transition(order, line, S.DELIVERED)
    assert err.value.rule == "R01"
    assert "skips a step" in err.value.message


@pytest.mark.parametrize("kind", [ProductKind.DIGITAL, ProductKind.MEMBERSHIP])
def test_r02_digital_and_membership_confirmed_at_payment(kind: ProductKind) -> None:
    """R02: digital goods and memberships start PURCHASE_CONFIRMED once paid, never ship."""
    assert initial_status(kind, paid=True) is S.PURCHASE_CONFIRMED
    assert initial_status(kind, paid=False) is S.PAYMENT_WAITING
    order, line = make(S.PAYMENT_WAITING, kind=kind)
    check_transition(order, line, S.PURCHASE_CONFIRMED)
    with pytest.raises(TransitionError) as err:
        check_transition(order, line, S.PREPARING)
    assert err.value.rule == "R02"


@pytest.mark.parametrize("kind", [ProductKind.PARCEL, ProductKind.NO_DELIVERY])
def test_r02_ordinary_lines_start_preparing_when_paid(kind: ProductKind) -> None:
    """R02: a paid ordinary line starts PREPARING, an unpaid one PAYMENT_WAITING."""
    assert initial_status(kind, paid=True) is S.PREPARING
    assert initial_status(kind, paid=False) is S.PAYMENT_WAITING


def test_r02_payment_moves_waiting_to_preparing() -> None:
    """R02: PAYMENT_WAITING -> PREPARING on payment, not further."""
    order, line = make(S.PAYMENT_WAITING, paid=False, method=PaymentMethod.BANK_TRANSFER)
    check_transition(order, line, S.PREPARING)
    with pytest.raises(TransitionError):
        check_transition(order, line, S.READY_TO_SHIP)


def test_r08_unpaid_cancelled_order_cannot_be_resumed() -> None:
    """R08: an unpaid order cancelled (at its deadline) cannot be resumed: a new order is
    needed."""
    order, line = make(S.PAYMENT_WAITING, paid=False, method=PaymentMethod.BANK_TRANSFER)
    check_transition(order, line, S.CANCELED)
    cancelled = replace(line, status=S.CANCELED)
    for target in (S.PAYMENT_WAITING, S.PREPARING, S.CANCEL_REQUESTED):
        with pytest.raises(TransitionError) as err:
            check_transition(order, cancelled, target)
        assert err.value.rule == "R08"
        assert "new order" in err.value.message


def test_r09_cancel_moves_go_through_check_cancel() -> None:
    """R09: check_transition refuses a cancel once shipped and says a return is possible."""
    order, line = make(S.SHIPPING, has_invoice=True)
    with pytest.raises(InvoiceNotAllowedError, match="return is possible") as err:
        check_transition(order, line, S.CANCELED)
    assert err.value.rule == "R09"


def test_r10_exchange_approval_move_needs_collection() -> None:
    """R10: EXCHANGE_REQUESTED -> EXCHANGED only after the item was collected."""
    order, line = make(S.EXCHANGE_REQUESTED, claim=ClaimStatus.REQUESTED)
    with pytest.raises(TransitionError) as err:
        check_transition(order, line, S.EXCHANGED)
    assert err.value.rule == "R10"
    check_transition(order, replace(line, claim_status=ClaimStatus.COLLECTED), S.EXCHANGED)


def test_r01_transition_table_has_one_entry_per_move_and_renders() -> None:
    """R01: the documented table is the one enforced; each (from, to) pair appears once and the
    Markdown shows every move."""
    assert transition_table() is TRANSITIONS
    pairs = Counter((m.source, m.target) for m in TRANSITIONS)
    assert [p for p, n in pairs.items() if n > 1] == []
    rendered = render_transition_table().splitlines()
    assert len(rendered) == len(TRANSITIONS) + 2
    assert "| PREPARING | DELIVERED | no_delivery | R02 |" in "\n".join(rendered)


def test_r01_allowed_targets_lists_the_next_and_previous_step() -> None:
    """R01: from READY_TO_SHIP a parcel may go forward, back or be cancelled."""
    _, line = make(S.READY_TO_SHIP)
    assert set(allowed_targets(line)) == {
        S.SHIPPING,
        S.PREPARING,
        S.CANCEL_REQUESTED,
        S.CANCELED,
    }
