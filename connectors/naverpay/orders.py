"""Naver product-order details → the domain's order payload (``ChannelOrder``, ``Address``).

Pure conversions used by :mod:`connectors.naverpay.changes`. Missing required address parts
become ``-`` (gift orders and masked numbers can lack them); money is whole won, never negative.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.naverpay.dates import parse_opt
from store.domain import PaymentMethod, ProductKind
from store.mileage import earning_base
from topics.changes import ChannelLine, ChannelOrder
from topics.commands import Address

#: ``order.paymentMeans`` is a Korean label, not a code (spec §4.2).
PAYMENT_MEANS: tuple[tuple[str, PaymentMethod], ...] = (
    ("무통장", PaymentMethod.BANK_TRANSFER),
    ("가상계좌", PaymentMethod.VIRTUAL_ACCOUNT),
    ("카드", PaymentMethod.CARD),
    ("포인트", PaymentMethod.POINTS),
    ("마일리지", PaymentMethod.POINTS),
)


def money(value: object) -> Decimal:
    try:
        amount = Decimal(str(value if value is not None else 0))
    except InvalidOperation:
        return Decimal(0)
    return max(amount, Decimal(0))


def _filled(value: object) -> str:
    text = str(value).strip() if value is not None else ""
    return text or "-"


def naver_address(shipping: Mapping[str, Any] | None, fallback_name: str = "") -> Address:
    """``shippingAddress`` → :class:`Address`; missing required parts become ``-`` (gift
    orders and masked numbers can lack them)."""
    shipping = shipping or {}
    return Address(
        name=_filled(shipping.get("name") or fallback_name)[:100],
        phone=_filled(shipping.get("tel1") or shipping.get("tel2"))[:40],
        zip_code=_filled(shipping.get("zipCode"))[:16],
        line1=_filled(shipping.get("baseAddress"))[:300],
        line2=str(shipping.get("detailedAddress") or "")[:300],
    )


def address_hash(address: Address) -> str:
    text = json.dumps(address.model_dump(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def payment_method(means: object) -> PaymentMethod:
    label = str(means or "")
    for needle, method in PAYMENT_MEANS:
        if needle in label:
            return method
    return PaymentMethod.OTHER


def channel_line(detail: Mapping[str, Any]) -> ChannelLine:
    po = detail.get("productOrder") or {}
    name = str(po.get("productName") or "")
    if po.get("productOption"):
        name = f"{name} / {po['productOption']}"
    sku = (
        po.get("sellerProductCode")
        or po.get("optionManageCode")
        or po.get("optionCode")
        or po.get("productId")
        or po.get("productOrderId")
    )
    kind = ProductKind.PARCEL
    if po.get("expectedDeliveryMethod") == "NOTHING":
        kind = ProductKind.NO_DELIVERY
    return ChannelLine(
        unit_id=str(po["productOrderId"]),
        sku=str(sku),
        name=name[:300],
        quantity=max(1, int(po.get("quantity") or po.get("initialQuantity") or 1)),
        unit_price=money(po.get("unitPrice")) + money(po.get("optionPrice")),
        amount=money(po.get("totalPaymentAmount")),
        kind=kind,
    )


def channel_order(details: Sequence[Mapping[str, Any]]) -> ChannelOrder:
    """ORDER_PAID payload from every product order of one order (R20–R22 amounts: mileage used
    and the R21 earning base = purchase amount − mileage used)."""
    first = details[0]
    order = first.get("order") or {}
    lines = [channel_line(d) for d in sorted(details, key=_po_id)]
    mileage = money(order.get("naverMileagePaymentAmount"))
    purchase = sum((line.amount for line in lines), Decimal(0))
    po = first.get("productOrder") or {}
    return ChannelOrder(
        channel_order_id=str(order.get("orderId") or ""),
        buyer_name=str(order.get("ordererName") or ""),
        address=naver_address(po.get("shippingAddress"), str(order.get("ordererName") or "")),
        payment_method=payment_method(order.get("paymentMeans")),
        paid_at=parse_opt(order.get("paymentDate")),
        lines=lines,
        mileage_used=mileage,
        earning_base=earning_base(purchase, mileage),
    )


def _po_id(detail: Mapping[str, Any]) -> str:
    return str((detail.get("productOrder") or {}).get("productOrderId", ""))
