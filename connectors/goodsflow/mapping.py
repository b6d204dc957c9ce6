"""Goodsflow ↔ domain mapping: the ONE status table, dates, JSON → models, request bodies.

Status codes (goodsflow.md §5.1): the string ``deliveryStatus``/``status`` codes of the
Platform Open API and the numeric ``dlvStatType`` codes still carried next to them live in
:data:`STATUS_TABLE`. Unknown codes map to ``None`` (the caller quarantines, S3); an unknown
numeric code falls back to its decade's entry (``"41"`` → ``"40"``), because clients group
``dlvStatType`` by first digit — the decade entries marked *guess* are unconfirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.goodsflow.models import (
    Center,
    NumberCheck,
    TrackingEvent,
    TrackingInfo,
    Waybill,
    WaybillRequest,
)
from store.carriers import Carrier, UnknownCarrierCodeError, channel_code, from_channel_code
from store.domain import TrackingState

KST = timezone(timedelta(hours=9), "KST")  # Goodsflow times are Korean local time (inferred)

_S = TrackingState
#: Goodsflow status code → carrier-neutral tracking state. The only mapping table.
STATUS_TABLE: dict[str, TrackingState] = {
    # v1 string codes (OAS "deliveryStatus")
    "PRINTED": _S.NONE,  # label printed; not a carrier scan (seq 0)
    "TRANSFERRED": _S.NONE,  # order sent to the carrier; not a scan (seq 0)
    "PICKUP_FAILED": _S.NONE,  # not picked up yet
    "PICKUP": _S.PICKED_UP,  # 집하
    "IN_TRANSIT": _S.IN_TRANSIT,
    "DLV_START": _S.OUT_FOR_DELIVERY,
    "DLV_FAILED": _S.OUT_FOR_DELIVERY,  # attempt failed; the carrier still has it
    "COMPLETED": _S.DELIVERED,
    "RETURNED": _S.EXCEPTION,
    "ERROR": _S.EXCEPTION,
    "CANCELED": _S.NONE,  # registration cancelled before pickup; not a scan
    # numeric dlvStatType (legacy, still in tracking details)
    "27": _S.NONE,  # pickup scheduled
    "29": _S.NONE,  # not picked up
    "30": _S.PICKED_UP,
    "50": _S.IN_TRANSIT,
    "70": _S.DELIVERED,
    "99": _S.EXCEPTION,
    # decade fallbacks for codes seen only as "grouped by first digit" (guess)
    "20": _S.NONE,
    "40": _S.IN_TRANSIT,  # guess: hub moves
    "60": _S.OUT_FOR_DELIVERY,  # guess: out for delivery
    "90": _S.EXCEPTION,
}


def map_status(code: str | None) -> TrackingState | None:
    """The tracking state of a Goodsflow status code; ``None`` when unknown."""
    if not code:
        return None
    code = code.strip().upper()
    if code in STATUS_TABLE:
        return STATUS_TABLE[code]
    if len(code) == 2 and code.isdigit():
        return STATUS_TABLE.get(code[0] + "0")
    return None


def parse_time(value: str | None) -> datetime | None:
    """``"YYYY-MM-DD HH:MM[:SS]"`` (KST) → aware datetime; ``None`` for empty or unparsable."""
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=KST)
        except ValueError:
            continue
    return None


def format_time(value: datetime, *, seconds: bool = True) -> str:
    local = value.astimezone(KST) if value.tzinfo else value
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def transporter_code(carrier: Carrier) -> str:
    """The Goodsflow ``transporter`` code; raises UnknownCarrierCodeError when Goodsflow has
    none for the carrier."""
    return channel_code(carrier, "goodsflow")


def carrier_of(transporter: str | None) -> Carrier | None:
    if not transporter:
        return None
    try:
        return from_channel_code(transporter, "goodsflow")
    except UnknownCarrierCodeError:
        return None


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def print_item(request: WaybillRequest, center: Center, now: datetime) -> dict[str, Any]:
    """One item of ``POST /api/deliveries/shipping/print/deliveryItems``. Sender fields come
    from the contract's center only (R27)."""
    rcv = request.receiver
    return {
        "centerCode": center.code,
        "uniqueId": request.unique_id,
        "boxSize": request.box_size,
        "transporter": transporter_code(request.carrier),
        "deliveryPaymentMethod": "SENDER_PAY" if request.sender_pays else "RECEIVER_PAY",
        "fromName": center.name,
        "fromPhoneNo": _digits(center.phone),
        "fromZipcode": center.zip_code,
        "fromAddress1": center.address1,
        "fromAddress2": center.address2,
        "toName": rcv.name,
        "toPhoneNo": _digits(rcv.phone),
        "toZipcode": rcv.zip_code,
        "toAddress1": rcv.line1,
        "toAddress2": rcv.line2,
        "deliveryMessage": request.message,
        "deliveryItems": [
            {
                "orderNo": item.order_no,
                "orderDate": format_time(item.order_date or now, seconds=False),
                "name": item.name,
                "quantity": item.quantity,
                "price": item.price,
                **({"code": item.code} if item.code else {}),
                **({"option": item.option} if item.option else {}),
            }
            for item in request.items
        ],
    }


def center_from(data: Mapping[str, Any]) -> Center:
    return Center(
        code=_s(data.get("code")),
        name=_s(data.get("name")),
        phone=_s(data.get("phoneNo1")),
        zip_code=_s(data.get("zipCode")),
        address1=_s(data.get("address1")),
        address2=_s(data.get("address2")),
    )


def event_from(data: Mapping[str, Any]) -> TrackingEvent:
    """A webhook event (``Webhook 자료 데이터``) or a tracking detail row."""
    raw = _s(data.get("deliveryStatus") or data.get("status") or data.get("dlvStatType"))
    transporter = _s(data.get("transporter"))
    seq = data.get("seq")
    return TrackingEvent(
        service_id=_opt(data.get("serviceId") or data.get("id")),
        unique_id=_opt(data.get("uniqueId")),
        carrier=carrier_of(transporter),
        transporter=transporter,
        invoice_no=_opt(data.get("invoiceNo")),
        seq=int(seq) if isinstance(seq, int | str) and str(seq).isdigit() else 0,
        raw_status=raw,
        state=map_status(raw),
        at=parse_time(data.get("statusDateTime")),
        location=_s(data.get("location")),
    )


def tracking_from(data: Mapping[str, Any]) -> TrackingInfo:
    """``배송 주문 종적 데이터`` → :class:`TrackingInfo` (details inherit the parcel's ids)."""
    transporter = _s(data.get("transporter"))
    raw = _opt(data.get("lastStatus")) or _opt(data.get("lastDlvStatType"))
    base = {
        "serviceId": data.get("id"),
        "uniqueId": data.get("uniqueId"),
        "transporter": transporter,
        "invoiceNo": data.get("invoiceNo"),
    }
    events = tuple(
        event_from({**base, **row}) for row in data.get("details") or [] if isinstance(row, dict)
    )
    return TrackingInfo(
        service_id=_opt(data.get("id")),
        unique_id=_opt(data.get("uniqueId")),
        carrier=carrier_of(transporter),
        transporter=transporter,
        invoice_no=_opt(data.get("invoiceNo")),
        raw_status=raw,
        state=map_status(raw),
        last_status_at=parse_time(data.get("lastStatusDateTime")),
        picked_up_at=parse_time(data.get("pickupDateTime")),
        delivered_at=parse_time(data.get("completeDateTime")),
        events=events,
    )


def waybill_from(data: Mapping[str, Any]) -> Waybill:
    """``배송 주문 데이터`` (registration lookup) → :class:`Waybill`."""
    transporter = _s(data.get("transporter"))
    status = _opt(data.get("status"))
    return Waybill(
        service_id=_s(data.get("id")),
        unique_id=_opt(data.get("uniqueId")),
        carrier=carrier_of(transporter),
        transporter=transporter,
        invoice_no=_opt(data.get("invoiceNo")),
        status=status,
        state=map_status(status),
        service_type=_opt(data.get("serviceType")),
    )


def number_checks_from(data: Mapping[str, Any]) -> list[NumberCheck]:
    return [
        NumberCheck(
            _s(row.get("requestInvoiceNo")), _s(row.get("invoiceNo")), bool(row.get("valid"))
        )
        for row in data.get("invoiceNoList") or []
        if isinstance(row, dict)
    ]
