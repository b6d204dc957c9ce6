"""The small frozen value objects the rules of ``store.state_machine`` read.

They carry only what the rules need, so the rules stay pure and synchronous: the repository builds
them from the models (``store.repo.order_view``), a rule reads them and either returns or raises a
:class:`~store.errors.RuleViolation`. Nothing here touches I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from store.domain import (
    EXTERNAL_CHECKOUT_CHANNELS,
    Channel,
    ClaimStatus,
    ExchangeFeeMode,
    LineStatus,
    PaymentMethod,
    ProductKind,
)

#: R02: kinds that are never shipped and are purchase-confirmed at payment.
CONFIRMED_AT_PAYMENT = frozenset({ProductKind.DIGITAL, ProductKind.MEMBERSHIP})

#: R01/R02: kinds that follow the shipping lifecycle (a no-delivery line may take a shortcut).
SHIPPABLE_KINDS = frozenset({ProductKind.PARCEL, ProductKind.NO_DELIVERY})


@dataclass(frozen=True)
class LineView:
    """One order line as the rules see it.

    ``channel_notified`` holds the statuses the marketplace has been told of (e.g. ``SHIPPING``
    once a dispatch was pushed); R01 refuses moving back past such a status. ``claim_status`` is
    the state of the line's open claim, if any (R10 needs ``COLLECTED`` before an exchange is
    approved); ``None`` means no open claim.
    """

    line_id: str
    status: LineStatus
    quantity: int
    kind: ProductKind = ProductKind.PARCEL
    has_invoice: bool = False
    channel_notified: frozenset[LineStatus] = frozenset()
    claim_status: ClaimStatus | None = None


@dataclass(frozen=True)
class OrderView:
    """One order as the rules see it (amounts in won, as ``Decimal``)."""

    order_id: str
    channel: Channel
    payment_method: PaymentMethod
    lines: tuple[LineView, ...]
    on_hold: bool = False
    paid: bool = True
    total_paid: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)

    @property
    def external_checkout(self) -> bool:
        """R04: the order was checked out on a marketplace (Naver Pay order-type, Qoo10)."""
        return self.channel in EXTERNAL_CHECKOUT_CHANNELS

    @property
    def refundable(self) -> Decimal:
        """What can still be refunded: ``total_paid - refunded`` (never below zero)."""
        return max(self.total_paid - self.refunded, Decimal(0))


@dataclass(frozen=True)
class ExchangePlan:
    """R10: what approving a collected exchange does, for the caller to write in one transaction.

    The original line ends ``EXCHANGED``; a re-shipment line of the same kind and quantity is added
    in ``PREPARING`` (on a marketplace order it re-ships the same channel unit, it is not an added
    item in the R04 sense). ``refund_deduction`` is taken off the order's refund (fee mode
    ``deduct``); ``extra_charge`` is asked of the buyer (fee mode ``charge``); both are zero for
    ``none``.
    """

    order_id: str
    line_id: str
    fee_mode: ExchangeFeeMode
    fee: Decimal
    reship_quantity: int
    reship_kind: ProductKind
    reship_status: LineStatus = LineStatus.PREPARING
    original_status: LineStatus = LineStatus.EXCHANGED
    refund_deduction: Decimal = field(default=Decimal(0))
    extra_charge: Decimal = field(default=Decimal(0))
