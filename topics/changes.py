"""Marketplace changes the ingest timers put on ``channel.changes`` (inbound work).

A connector's ``changes_since(...)`` returns :class:`ChannelChange` values. ``change_key`` is
stable for the same marketplace fact (e.g. ``naverpay:<productOrderId>:<type>:<changedDate>``),
so re-reading an overlapping window de-duplicates (R17). The envelope of a change carries
``type = "change." + change.kind`` and ``order_id = "<channel>:<channel_order_id>"`` until the
apply agent resolves it to the internal order id.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from store.carriers import Carrier
from store.domain import Channel, PaymentMethod, ProductKind
from topics.base import AwareDatetime, Model
from topics.commands import Address


class ChangeKind(StrEnum):
    ORDER_PAID = "order_paid"  # new paid order (lines, address, amounts)
    ADDRESS_CHANGED = "address_changed"  # R12
    DISPATCHED = "dispatched"  # dispatch done elsewhere (seller centre) -> R15 collapse
    DELIVERED = "delivered"
    PURCHASE_DECIDED = "purchase_decided"  # R07
    CANCEL_REQUESTED = "cancel_requested"  # R25/R29
    CANCEL_WITHDRAWN = "cancel_withdrawn"  # buyer withdrew the request
    CANCELED = "canceled"  # cancel completed (R16; R25 immediate cancels)
    RETURN_REQUESTED = "return_requested"
    RETURN_HELD = "return_held"  # R14
    RETURN_HOLD_RELEASED = "return_hold_released"
    RETURNED = "returned"
    EXCHANGE_REQUESTED = "exchange_requested"
    EXCHANGED = "exchanged"
    UNKNOWN = "unknown"  # a marketplace change type we do not map: dead-lettered, not dropped


class ChannelLine(Model):
    unit_id: str = Field(min_length=1, description="product order id (Naver) / order no (Qoo10)")
    sku: str
    name: str = ""
    quantity: int = Field(ge=1)
    unit_price: Decimal = Field(ge=0)
    amount: Decimal = Field(ge=0, description="line total the buyer paid")
    kind: ProductKind = ProductKind.PARCEL


class ChannelOrder(Model):
    channel_order_id: str
    buyer_name: str = ""
    address: Address
    payment_method: PaymentMethod = PaymentMethod.CARD
    paid_at: AwareDatetime | None = None
    lines: list[ChannelLine] = Field(min_length=1)
    mileage_used: Decimal = Field(default=Decimal(0), ge=0, description="R20-R22 (Naver)")
    earning_base: Decimal | None = Field(default=None, ge=0, description="R21 (Naver)")


class ChannelChange(Model):
    """One marketplace fact, as the store needs it.

    Fields beyond the common ones are set per ``kind``: ``order`` for ORDER_PAID, ``address``
    for ADDRESS_CHANGED, ``carrier``/``tracking_number`` for DISPATCHED, ``reason`` and
    ``claim_id`` for claims, ``raw_type`` always (the marketplace's own type/status string).
    ``unit_ids`` names the lines (product orders) the change touches.
    """

    channel: Channel
    account: str = "default"
    change_key: str = Field(min_length=1, max_length=300)
    kind: ChangeKind
    channel_order_id: str = Field(min_length=1)
    unit_ids: list[str] = Field(default_factory=list)
    changed_at: AwareDatetime
    raw_type: str = ""
    order: ChannelOrder | None = None
    address: Address | None = None
    carrier: Carrier | None = None
    tracking_number: str | None = None
    claim_id: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
