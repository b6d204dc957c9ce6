"""Pure Qoo10 decisions (rules R04, R23, R24, R25): no I/O, shared by the client and the sandbox.

Each function either returns a decision or raises a :class:`store.errors.RuleViolation` subclass
naming the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectors.qoo10.codes import (
    BUYER_REQUEST_CANCEL_REASON,
    CANCEL_REASON_CODES,
    DISPATCHED_STATUSES,
    ShippingStatus,
)
from connectors.qoo10.errors import SellerCancelRefusedError
from store.errors import OpenClaimError, SplitNotAllowedError

#: R23: seller-fault reasons, allowed without a buyer request.
SELLER_FAULT_REASONS = frozenset({"SOLD_OUT", "DELAYED_DELIVERY", "UNDELIVERABLE_AREA"})
#: R23: buyer-fault reasons, allowed only with an open buyer cancel request.
BUYER_FAULT_REASONS = frozenset({"CHANGED_MIND", "OPTION_CHANGE"})
#: R24: the only reason a dispatched order may be refunded by the seller.
AFTER_DISPATCH_REASON = "DELAYED_DELIVERY"


class CancelPath(StrEnum):
    CANCEL = "cancel"  # SetCancelProcess before dispatch (R23)
    REFUND_AFTER_DISPATCH = "refund_after_dispatch"  # return with reason delivery delay (R24)
    ALREADY_CANCELED = "already_canceled"  # idempotent: nothing to send


@dataclass(frozen=True)
class CancelPlan:
    path: CancelPath
    cancel_reason_code: str  # the CancelReason form value


@dataclass(frozen=True)
class OrderFacts:
    """What the rules need to know about one Qoo10 order (read from the detail method)."""

    shipping_status: ShippingStatus | None
    open_cancel_request: bool = False
    canceled: bool = False

    @property
    def dispatched(self) -> bool:
        return self.shipping_status in DISPATCHED_STATUSES


def plan_seller_cancel(order_no: str, reason: str, facts: OrderFacts) -> CancelPlan:
    """Decide how a seller cancel of ``order_no`` for ``reason`` is carried out.

    * already cancelled → :attr:`CancelPath.ALREADY_CANCELED` (idempotent success);
    * dispatched → R24: only ``DELAYED_DELIVERY``, as a refund after dispatch;
    * before dispatch → R23: seller-fault reasons always; buyer-fault reasons only with an open
      buyer cancel request (then the buyer-side code "1").

    Raises :class:`SellerCancelRefusedError` (rule R23 or R24) otherwise.
    """
    if facts.canceled:
        return CancelPlan(CancelPath.ALREADY_CANCELED, "")
    if facts.dispatched:
        if reason != AFTER_DISPATCH_REASON:
            raise SellerCancelRefusedError(
                "R24",
                f"Qoo10 order {order_no} is dispatched: a seller refund is a return with reason "
                f"DELAYED_DELIVERY only, not {reason}",
            )
        return CancelPlan(CancelPath.REFUND_AFTER_DISPATCH, CANCEL_REASON_CODES[reason])
    if reason in SELLER_FAULT_REASONS:
        return CancelPlan(CancelPath.CANCEL, CANCEL_REASON_CODES[reason])
    if reason in BUYER_FAULT_REASONS:
        if not facts.open_cancel_request:
            raise SellerCancelRefusedError(
                "R23",
                f"buyer-fault reason {reason} needs an open buyer cancel request on Qoo10 order "
                f"{order_no}",
            )
        return CancelPlan(CancelPath.CANCEL, BUYER_REQUEST_CANCEL_REASON)
    raise SellerCancelRefusedError(
        "R23",
        f"reason {reason} is not a Qoo10 cancel reason (seller fault: "
        f"{', '.join(sorted(SELLER_FAULT_REASONS))}; buyer fault with a request: "
        f"{', '.join(sorted(BUYER_FAULT_REASONS))})",
    )


def check_dispatch_allowed(order_no: str, facts: OrderFacts) -> None:
    """R25: a dispatch is refused while a buyer cancel request is open (and for a cancelled
    order). Raises :class:`store.errors.OpenClaimError`."""
    if facts.open_cancel_request:
        raise OpenClaimError(
            "R25",
            f"Qoo10 order {order_no} has an open buyer cancel request: approve it, or have it "
            "declined or withdrawn, before dispatch",
        )
    if facts.canceled:
        raise OpenClaimError("R25", f"Qoo10 order {order_no} is cancelled")


class BuyerCancelOutcome(StrEnum):
    CANCELED = "canceled"  # refunded at once by the marketplace
    REQUESTED = "requested"  # needs seller approval
    REFUSED = "refused"  # dispatched: only a return is possible


def buyer_cancel_outcome(status: ShippingStatus) -> BuyerCancelOutcome:
    """R25: what a buyer's cancel does in ``status``: immediate while new / processing /
    delayed (no estimated ship date yet), a request once the estimated ship date is entered,
    refused after dispatch."""
    if status in DISPATCHED_STATUSES:
        return BuyerCancelOutcome.REFUSED
    if status == ShippingStatus.PREPARED:
        return BuyerCancelOutcome.REQUESTED
    return BuyerCancelOutcome.CANCELED


def check_whole_quantity(order_no: str, requested: int, ordered: int) -> None:
    """R04: a Qoo10 order line is shipped, cancelled or returned whole. Raises
    :class:`store.errors.SplitNotAllowedError` for any other quantity."""
    if requested != ordered:
        raise SplitNotAllowedError(
            "R04",
            f"channel qoo10 does not allow quantity splits: order {order_no} has quantity "
            f"{ordered}, {requested} requested",
        )
