"""Commands the OMS and operators put on ``oms.commands`` (outbound work)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import Field

from store.carriers import Carrier
from store.domain import ExchangeFeeMode, InvoiceKind, LineStatus, PaymentMethod, ProductKind
from topics.base import AwareDatetime, Model

LineIds = list[str]


class Address(Model):
    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=1, max_length=40)
    zip_code: str = Field(min_length=1, max_length=16)
    line1: str = Field(min_length=1, max_length=300)
    line2: str = Field(default="", max_length=300)


class LineSpec(Model):
    line_id: str = Field(min_length=1, max_length=128)
    sku: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=300)
    quantity: int = Field(ge=1)
    unit_price: Decimal = Field(ge=0)
    kind: ProductKind = ProductKind.PARCEL
    channel_unit_id: str | None = Field(default=None, max_length=128)


class OrderImport(Model):
    """Register an order in the store (OMS-native orders, tests, demo)."""

    channel_order_id: str | None = None
    status: LineStatus = LineStatus.PREPARING
    payment_method: PaymentMethod = PaymentMethod.CARD
    address: Address
    lines: list[LineSpec] = Field(min_length=1)
    payment_deadline: AwareDatetime | None = None


class OrderConfirm(Model):
    """Seller acknowledges the order (발주확인); on Qoo10 with the estimated ship date, which
    makes the order "shipping prepared" (R25: buyer cancels then need approval)."""

    line_ids: LineIds = Field(min_length=1)
    estimated_ship_date: date | None = None


class LineStatusChange(Model):
    """Operator moves lines one step (R01/R02)."""

    line_ids: LineIds = Field(min_length=1)
    to_status: LineStatus
    by: str = "operator"


class LineSplit(Model):
    """Split a line's quantity (R03/R04)."""

    line_id: str
    quantities: list[int] = Field(min_length=2)


class ShipmentRegistered(Model):
    """An invoice attached to lines (R05, R18, R28); pushed as a dispatch on pickup (R06) or at
    once when ``dispatch_now``."""

    line_ids: LineIds = Field(min_length=1)
    carrier: Carrier
    tracking_number: str = Field(min_length=1, max_length=40)
    kind: InvoiceKind = InvoiceKind.PARCEL
    dispatch_now: bool = False
    shipped_quantity: dict[str, int] | None = None  # R15: physically shipped per line


class WaybillRequest(Model):
    """Ask Goodsflow for waybills for READY_TO_SHIP lines (R05; refused on hold, R12; the
    sender is the Goodsflow contract's, R27)."""

    line_ids: LineIds = Field(min_length=1)
    carrier: Carrier


class PickupReached(Model):
    line_ids: LineIds = Field(min_length=1)
    scanned_at: AwareDatetime


class InvoiceDeleted(Model):
    line_ids: LineIds = Field(min_length=1)


class DispatchDelay(Model):
    """R13: naverpay, PREPARING, one order per request."""

    line_ids: LineIds = Field(min_length=1)
    due_date: date
    reason: Literal[
        "PRODUCT_PREPARE",
        "CUSTOMER_REQUEST",
        "CUSTOM_BUILD",
        "RESERVED_DISPATCH",
        "OVERSEA_DELIVERY",
        "ETC",
    ]
    detail: str = Field(min_length=1, max_length=300)


class SellerCancel(Model):
    """Seller-initiated cancel (R09, R16, R23)."""

    line_ids: LineIds = Field(min_length=1)
    reason: Literal[
        "SOLD_OUT",
        "DELAYED_DELIVERY",
        "UNDELIVERABLE_AREA",
        "CHANGED_MIND",
        "OPTION_CHANGE",
        "OTHER",
    ]
    buyer_message: str | None = Field(default=None, max_length=1000)


class BuyerCancelDecision(Model):
    """Approve or reject a buyer's cancel request. ``ship_anyway`` (reject) is the explicit
    operator decision of R29."""

    line_ids: LineIds = Field(min_length=1)
    reason: str = Field(default="", max_length=300)


class ReturnHold(Model):
    """R14: hold a return for a fee."""

    line_ids: LineIds = Field(min_length=1)
    fee: Decimal = Field(ge=0)
    fee_payment: Literal["deduct_refund", "transfer", "in_box"] = "deduct_refund"
    reason: str = Field(default="RETURN_DELIVERYFEE", max_length=64)


class ReturnLines(Model):
    line_ids: LineIds = Field(min_length=1)


class ExchangeApprove(Model):
    """R10."""

    line_ids: LineIds = Field(min_length=1)
    fee_mode: ExchangeFeeMode = ExchangeFeeMode.NONE
    fee: Decimal = Field(default=Decimal(0), ge=0)


class HoldRelease(Model):
    """R12: operator lifts a delivery hold."""

    by: str = Field(min_length=1, max_length=100)
    note: str = ""


class RefundRequest(Model):
    """R11."""

    amount: Decimal = Field(gt=0)


class BuyerMessage(Model):
    text: str = Field(min_length=1, max_length=1000)


COMMAND_MODELS: dict[str, type[Model]] = {
    "order.import": OrderImport,
    "order.confirm": OrderConfirm,
    "line.status": LineStatusChange,
    "line.split": LineSplit,
    "shipment.registered": ShipmentRegistered,
    "waybill.request": WaybillRequest,
    "pickup.reached": PickupReached,
    "invoice.deleted": InvoiceDeleted,
    "dispatch.delay": DispatchDelay,
    "seller.cancel": SellerCancel,
    "buyer_cancel.approve": BuyerCancelDecision,
    "buyer_cancel.reject": BuyerCancelDecision,
    "return.hold": ReturnHold,
    "return.hold_release": ReturnLines,
    "return.approve": ReturnLines,
    "exchange.approve": ExchangeApprove,
    "hold.release": HoldRelease,
    "refund.request": RefundRequest,
    "buyer.message": BuyerMessage,
}
