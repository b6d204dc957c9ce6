"""The domain vocabulary shared by the store, the topics and the connectors (see rules.md)."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    OMS = "oms"  # the shop's own checkout: quantity splits allowed
    NAVERPAY = "naverpay"
    QOO10 = "qoo10"


EXTERNAL_CHECKOUT_CHANNELS = frozenset({Channel.NAVERPAY, Channel.QOO10})


class LineStatus(StrEnum):
    PAYMENT_WAITING = "PAYMENT_WAITING"
    PREPARING = "PREPARING"
    READY_TO_SHIP = "READY_TO_SHIP"
    SHIPPING = "SHIPPING"
    DELIVERED = "DELIVERED"
    PURCHASE_CONFIRMED = "PURCHASE_CONFIRMED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELED = "CANCELED"
    RETURN_REQUESTED = "RETURN_REQUESTED"
    RETURN_HELD = "RETURN_HELD"
    RETURNED = "RETURNED"
    EXCHANGE_REQUESTED = "EXCHANGE_REQUESTED"
    EXCHANGED = "EXCHANGED"


#: R01: the forward path, one step at a time.
FORWARD_PATH: tuple[LineStatus, ...] = (
    LineStatus.PREPARING,
    LineStatus.READY_TO_SHIP,
    LineStatus.SHIPPING,
    LineStatus.DELIVERED,
    LineStatus.PURCHASE_CONFIRMED,
)

FINAL_STATUSES = frozenset(
    {LineStatus.PURCHASE_CONFIRMED, LineStatus.CANCELED, LineStatus.RETURNED, LineStatus.EXCHANGED}
)


class ProductKind(StrEnum):
    PARCEL = "parcel"  # ordinary goods shipped by a carrier
    NO_DELIVERY = "no_delivery"  # R02: PREPARING -> DELIVERED, no invoice
    DIGITAL = "digital"  # R02: confirmed at payment
    MEMBERSHIP = "membership"  # R02: confirmed at payment


class PaymentMethod(StrEnum):
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"  # 무통장입금: can be unpaid (R08)
    VIRTUAL_ACCOUNT = "virtual_account"  # R11: refunds are whole
    POINTS = "points"
    OTHER = "other"


class ClaimType(StrEnum):
    CANCEL = "cancel"
    RETURN = "return"
    EXCHANGE = "exchange"


class ClaimStatus(StrEnum):
    REQUESTED = "requested"
    HELD = "held"  # return hold (R14)
    COLLECTED = "collected"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    COMPLETED = "completed"


class TrackingState(StrEnum):
    """Carrier-neutral tracking states (Goodsflow scan codes map onto these)."""

    NONE = "NONE"  # invoice issued, no scan yet
    PICKED_UP = "PICKED_UP"  # 집하
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERED = "DELIVERED"
    EXCEPTION = "EXCEPTION"  # returned to sender, undeliverable …


#: R06: any of these scans means the carrier has the parcel.
PICKUP_OR_LATER = frozenset(
    {
        TrackingState.PICKED_UP,
        TrackingState.IN_TRANSIT,
        TrackingState.OUT_FOR_DELIVERY,
        TrackingState.DELIVERED,
    }
)


class InvoiceKind(StrEnum):
    PARCEL = "parcel"
    QUICK = "quick"  # R28: arbitrary invoice allowed
    VISIT_PICKUP = "visit_pickup"  # R28


class ExchangeFeeMode(StrEnum):
    """R10: how the exchange shipping fee is settled."""

    DEDUCT = "deduct"
    CHARGE = "charge"
    NONE = "none"
