"""Claim rules: cancels (R09), returns, exchanges (R10), refunds (R11) and the dispatch gate (R12).

Pure checks over :mod:`store.rules_views`; each returns (or returns the plan it computed) when the
operation is allowed and raises a :class:`~store.errors.RuleViolation` subclass naming the rule
otherwise. Nothing is written, so a check may be repeated freely. Import them from
:mod:`store.state_machine`.
"""

from __future__ import annotations

from decimal import Decimal

from store.domain import FINAL_STATUSES, ClaimStatus, ExchangeFeeMode, LineStatus, PaymentMethod
from store.errors import (
    HoldActiveError,
    InvoiceNotAllowedError,
    PartialRefundError,
    RuleViolation,
    TransitionError,
)
from store.rules_views import CONFIRMED_AT_PAYMENT, ExchangePlan, LineView, OrderView

S = LineStatus

#: R09: from here on only a return is possible.
_SHIPPED = frozenset({S.SHIPPING, S.DELIVERED})
_IN_CLAIM = frozenset({S.RETURN_REQUESTED, S.RETURN_HELD, S.EXCHANGE_REQUESTED})
_NOT_SHIPPED = frozenset({S.PAYMENT_WAITING, S.PREPARING, S.READY_TO_SHIP, S.CANCEL_REQUESTED})
_COLLECTED_OR_LATER = frozenset(
    {ClaimStatus.COLLECTED, ClaimStatus.APPROVED, ClaimStatus.COMPLETED}
)


def check_cancel(order: OrderView, line: LineView) -> None:
    """R09: may ``line`` be cancelled (requested or completed)?

    Allowed while the line is unpaid, preparing, ready to ship or already cancel-requested, and
    no invoice is attached. Raises :class:`~store.errors.InvoiceNotAllowedError` (``R09``) from
    ``SHIPPING`` on (the message says a return is possible), for a line in a return or exchange,
    and for a line with an invoice (the message says to delete the invoice first);
    :class:`~store.errors.TransitionError` (``R09``) for a final status.
    """
    where = f"line {line.line_id} is {line.status}"
    if line.status in FINAL_STATUSES:
        hint = ""
        if line.kind in CONFIRMED_AT_PAYMENT and line.status is S.PURCHASE_CONFIRMED:
            hint = "; a digital line must be resumed before it can be cancelled"
        raise TransitionError("R09", f"{where}, a final status: nothing to cancel{hint}")
    if line.status in _SHIPPED:
        raise InvoiceNotAllowedError(
            "R09", f"{where}: a shipped line cannot be cancelled; a return is possible"
        )
    if line.status in _IN_CLAIM:
        raise InvoiceNotAllowedError(
            "R09", f"{where}: a shipped line in a return or exchange cannot be cancelled"
        )
    if line.has_invoice:
        raise InvoiceNotAllowedError(
            "R09", f"{where} with an invoice attached: delete the invoice first, then cancel"
        )


def check_return(order: OrderView, line: LineView) -> None:
    """R09: may a return of ``line`` be opened (or recorded complete)?

    Allowed only from ``SHIPPING`` or ``DELIVERED``. Raises
    :class:`~store.errors.TransitionError`: ``R02`` for digital goods and memberships (never
    returned by the buyer), ``R09`` for a line not shipped yet (cancel it instead), a line
    already in a claim, or a final status.
    """
    _check_shipped_claim(line, "return", "R09")


def check_exchange_request(order: OrderView, line: LineView) -> None:
    """R10: may an exchange of ``line`` be opened? Only from ``SHIPPING`` or ``DELIVERED``.

    Raises :class:`~store.errors.TransitionError` (``R10``; ``R02`` for digital goods)."""
    _check_shipped_claim(line, "exchange", "R10")


def _check_shipped_claim(line: LineView, what: str, rule: str) -> None:
    where = f"line {line.line_id} is {line.status}"
    if line.kind in CONFIRMED_AT_PAYMENT:
        raise TransitionError("R02", f"line {line.line_id} is {line.kind}: no {what} possible")
    if line.status in _SHIPPED:
        return
    if line.status in _NOT_SHIPPED:
        reason = "not shipped yet: cancel it instead"
    elif line.status in _IN_CLAIM:
        reason = "a return or exchange is already open"
    else:
        reason = "a final status"
    raise TransitionError(rule, f"{where}, {reason}; no {what} possible")


def check_exchange_collect(order: OrderView, line: LineView) -> None:
    """R10: may the item of an open exchange be recorded as collected?

    Raises :class:`~store.errors.TransitionError` (``R10``) unless the line is
    ``EXCHANGE_REQUESTED`` and not collected yet."""
    if line.status is not S.EXCHANGE_REQUESTED:
        raise TransitionError(
            "R10", f"line {line.line_id} is {line.status}: no open exchange to collect"
        )
    if line.claim_status in _COLLECTED_OR_LATER:
        raise TransitionError("R10", f"line {line.line_id}: the exchange is already collected")


def check_exchange_collected(order: OrderView, line: LineView) -> None:
    """R10: the line is ``EXCHANGE_REQUESTED`` and its item has been collected (``claim_status``
    ``COLLECTED``): the precondition of an approval. Raises :class:`TransitionError` (``R10``)."""
    if line.status is not S.EXCHANGE_REQUESTED:
        raise TransitionError(
            "R10", f"line {line.line_id} is {line.status}: no open exchange to approve"
        )
    if line.claim_status is not ClaimStatus.COLLECTED:
        state = line.claim_status or "not collected"
        raise TransitionError(
            "R10",
            f"line {line.line_id}: exchange is {state}; collect the item first, then approve",
        )


def check_exchange_approve(
    order: OrderView, line: LineView, fee_mode: ExchangeFeeMode, fee: Decimal
) -> ExchangePlan:
    """R10: approve a collected exchange and return the plan the caller writes.

    The fee is settled by ``fee_mode``: ``deduct`` takes it off the order's refund (so it may not
    exceed what is still refundable), ``charge`` asks the buyer for it, ``none`` means no money
    moves (the fee must be 0). Raises :class:`~store.errors.TransitionError` (``R10``) when the
    line has no open exchange or the item is not collected yet, and
    :class:`~store.errors.RuleViolation` (``R10``) for a negative or non-finite fee, a non-zero
    fee with ``none`` or a deduction larger than the refundable amount.
    """
    check_exchange_collected(order, line)
    mode = ExchangeFeeMode(fee_mode)
    if not fee.is_finite() or fee < 0:
        raise RuleViolation("R10", f"exchange fee must be a non-negative amount, got {fee}")
    if mode is ExchangeFeeMode.NONE and fee != 0:
        raise RuleViolation("R10", f"fee mode none moves no money, but the fee is {fee}")
    if mode is ExchangeFeeMode.DEDUCT and fee > order.refundable:
        raise RuleViolation(
            "R10",
            f"cannot deduct a fee of {fee} from a refund: only {order.refundable} is refundable; "
            "charge the buyer instead",
        )
    return ExchangePlan(
        order_id=order.order_id,
        line_id=line.line_id,
        fee_mode=mode,
        fee=fee,
        reship_quantity=line.quantity,
        reship_kind=line.kind,
        refund_deduction=fee if mode is ExchangeFeeMode.DEDUCT else Decimal(0),
        extra_charge=fee if mode is ExchangeFeeMode.CHARGE else Decimal(0),
    )


def check_refund(order: OrderView, amount: Decimal) -> None:
    """R11: may ``amount`` be refunded on ``order``?

    Any positive amount up to what is refundable (``total_paid - refunded``); on a virtual-account
    order only exactly that whole remainder. Raises :class:`~store.errors.PartialRefundError`
    (``R11``) for a partial virtual-account refund and :class:`~store.errors.RuleViolation`
    (``R11``) for a non-positive, non-finite or excessive amount.
    """
    if not amount.is_finite() or amount <= 0:
        raise RuleViolation("R11", f"refund amount must be positive, got {amount}")
    if amount > order.refundable:
        raise RuleViolation(
            "R11",
            f"refund of {amount} exceeds what order {order.order_id} can refund "
            f"({order.refundable})",
        )
    if order.payment_method is PaymentMethod.VIRTUAL_ACCOUNT and amount != order.refundable:
        raise PartialRefundError(
            "R11",
            f"order {order.order_id} was paid by virtual account: it is refunded only whole "
            f"({order.refundable}), not {amount}; refund partly by hand at the payment gateway",
        )


def check_dispatch_allowed(order: OrderView) -> None:
    """R12: a dispatch may be pushed (or a waybill requested) only while the order is not on
    delivery hold. Raises :class:`~store.errors.HoldActiveError` while it is."""
    if order.on_hold:
        raise HoldActiveError(order.order_id)
