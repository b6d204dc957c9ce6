"""How the Qoo10 sandbox writes its answer rows (field names from qoo10.md §5.1, §5.3, §5.4).

Status values are written as ``"<label>(<code>)"`` like the real list answers (§6.1, M); dates as
``YYYY-MM-DD HH:MM:SS`` JST (§7, L); empty values as ``""``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.qoo10.codes import (
    CLAIM_LABELS,
    PURCHASE_DECIDED_FIELD,
    SHIPPING_STATUS_LABELS,
    ClaimCode,
    ShippingStatus,
)
from connectors.qoo10.dates import format_response_datetime
from connectors.qoo10.sandbox_model import ClaimRecord, SandboxOrder

SELLER_ID = "sandbox-shop"


def _dt(moment: datetime | None) -> str:
    return format_response_datetime(moment) if moment is not None else ""


def shipping_label(status: ShippingStatus) -> str:
    return f"{SHIPPING_STATUS_LABELS[status]}({status.value})"


def claim_label(code: ClaimCode) -> str:
    return f"{CLAIM_LABELS[code]}({code.value})"


def shipping_row(order: SandboxOrder) -> dict[str, Any]:
    """A GetShippingInfo_v3 row (PascalCase)."""
    total = order.price * order.qty
    return {
        "ShippingStatus": shipping_label(order.status),
        "SellerID": SELLER_ID,
        "PackNo": order.pack_no,
        "OrderNo": order.order_no,
        "OrderDate": _dt(order.ordered_at),
        "PaymentDate": _dt(order.paid_at),
        "EstimatedShippingDate": order.est_ship_date.isoformat() + " 00:00:00"
        if order.est_ship_date
        else "",
        "ShippingDate": _dt(order.shipped_at),
        "DeliveredDate": _dt(order.delivered_at),
        PURCHASE_DECIDED_FIELD: _dt(order.decided_at),
        "Buyer": order.buyer,
        "BuyerMobile": order.phone,
        "ItemNo": order.item_code,
        "SellerItemCode": order.sku,
        "ItemTitle": order.title,
        "Option": "",
        "OrderPrice": str(order.price),
        "OrderQty": order.qty,
        "Discount": "0",
        "Total": str(total),
        "Receiver": order.receiver,
        "ZipCode": order.zip_code,
        "ShippingAddress": f"{order.address1} {order.address2}",
        "Address1": order.address1,
        "Address2": order.address2,
        "ReceiverMobile": order.phone,
        "PaymentMethod": order.payment_method,
        "Currency": "JPY",
        "DeliveryCompany": order.carrier,
        "TrackingNo": order.tracking_no,
        "SettlePrice": str(total),
    }


def _claim_fields(claim: ClaimRecord | None) -> dict[str, Any]:
    return {
        "claimStatus": claim_label(claim.code) if claim else "",
        "cancelRefundDate": _dt(claim.completed_at) if claim else "",
        "reason": claim.reason if claim else "",
        "requestDate": _dt(claim.requested_at) if claim else "",
    }


def detail_row(order: SandboxOrder) -> dict[str, Any]:
    """A GetShippingAndClaimInfoByOrderNo_V2 row (camelCase, shipping + current claim)."""
    return {
        "shippingStatus": shipping_label(order.status),
        "sellerID": SELLER_ID,
        "packNo": order.pack_no,
        "orderNo": order.order_no,
        "orderDate": _dt(order.ordered_at),
        "PaymentDate": _dt(order.paid_at),
        "DeliveredDate": _dt(order.delivered_at),
        "buyer": order.buyer,
        "itemCode": order.item_code,
        "sellerItemCode": order.sku,
        "itemTitle": order.title,
        "orderPrice": str(order.price),
        "orderQty": order.qty,
        "total": str(order.price * order.qty),
        "receiver": order.receiver,
        "zipCode": order.zip_code,
        "shippingAddr": f"{order.address1} {order.address2}",
        "shippingDate": _dt(order.shipped_at),
        "currency": "JPY",
        "deliveryCompany": order.carrier,
        "trackingNo": order.tracking_no,
        **_claim_fields(order.claim),
    }


def claim_row(order: SandboxOrder, claim: ClaimRecord) -> dict[str, Any]:
    """A GetClaimInfo_V3 row."""
    return {
        **_claim_fields(claim),
        "orderDate": _dt(order.ordered_at),
        "PaymentDate": _dt(order.paid_at),
        "shippingDate": _dt(order.shipped_at),
        "DeliveredDate": _dt(order.delivered_at),
        "orderNo": order.order_no,
        "packNo": order.pack_no,
        "itemCode": order.item_code,
        "sellerItemCode": order.sku,
        "itemTitle": order.title,
        "orderQty": order.qty,
        "currency": "JPY",
        "paymentAmount": str(order.price * order.qty),
        "deliveryCompany": order.carrier,
        "trackingNo": order.tracking_no,
        "receiver": order.receiver,
        "buyer": order.buyer,
    }
