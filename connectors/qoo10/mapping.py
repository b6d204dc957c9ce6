"""Qoo10 rows → domain values: ChannelChange, ClaimState, OrderFacts.

Pure functions over the JSON rows the list/detail methods answer. Field names are read without
regard to case (GetShippingInfo_v3 answers PascalCase, the V2/claim methods camelCase).

Change keys are stable for the same marketplace fact, so re-reading an overlapping window
de-duplicates (R17):

* ``qoo10:<PackNo>:order_paid:<OrderNo+…>``   one per cart (lines = the Qoo10 order numbers)
* ``qoo10:<OrderNo>:dispatched:<ShippingDate>:<TrackingNo>``
* ``qoo10:<OrderNo>:delivered`` / ``:purchase_decided`` / ``:canceled``   once per line
* ``qoo10:<OrderNo>:<kind>:<requestDate>``   other claim facts (one per request)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.contract import ClaimState
from connectors.qoo10.codes import (
    BULK_ROW_CODE_FIELDS,
    BULK_ROW_MESSAGE_FIELDS,
    BULK_ROW_ORDER_FIELDS,
    DISPATCHED_STATUSES,
    PURCHASE_DECIDED_FIELD,
    ClaimCode,
    ShippingStatus,
)
from connectors.qoo10.dates import JST, parse_qoo10_datetime
from connectors.qoo10.fields import (
    Row,
    carrier_of,
    claim_code,
    decimal,
    field,
    payment_method,
    shipping_status,
    text,
)
from connectors.qoo10.rules import OrderFacts
from store.domain import Channel, ClaimType
from topics.changes import ChangeKind, ChannelChange, ChannelLine, ChannelOrder
from topics.commands import Address

#: Claim status → (change kind, which date is the change time). "request" = requestDate,
#: "completion" = cancelRefundDate (falls back to requestDate when empty).
CLAIM_CHANGES: dict[ClaimCode, tuple[ChangeKind, str]] = {
    ClaimCode.CANCEL_REQUESTED: (ChangeKind.CANCEL_REQUESTED, "request"),  # R25 open request
    ClaimCode.CANCELLING: (ChangeKind.CANCELED, "completion"),  # accepted, refund under way
    ClaimCode.CANCELED: (ChangeKind.CANCELED, "completion"),  # R25 immediate or approved
    ClaimCode.UNPAID_CANCELED: (ChangeKind.CANCELED, "completion"),
    ClaimCode.WITHDRAWN: (ChangeKind.CANCEL_WITHDRAWN, "completion"),  # see ClaimCode.WITHDRAWN
    ClaimCode.RETURN_REQUESTED: (ChangeKind.RETURN_REQUESTED, "request"),
    ClaimCode.RETURNING: (ChangeKind.RETURN_REQUESTED, "request"),  # collected, same request
    ClaimCode.RETURNED: (ChangeKind.RETURNED, "completion"),
    ClaimCode.NON_RECEIPT_REFUNDED: (ChangeKind.RETURNED, "completion"),  # refunded after dispatch
    ClaimCode.EXCHANGE_REQUESTED: (ChangeKind.EXCHANGE_REQUESTED, "request"),
    ClaimCode.EXCHANGE_APPROVED: (ChangeKind.EXCHANGE_REQUESTED, "request"),
    ClaimCode.REDELIVERING: (ChangeKind.EXCHANGED, "completion"),
    # NON_RECEIPT_PARTLY_REFUNDED has no domain counterpart (partial refund): ingested as UNKNOWN
}

#: Change kinds keyed once per line (a line is cancelled / delivered / decided only once).
_ONCE_PER_LINE = frozenset({ChangeKind.CANCELED, ChangeKind.DELIVERED, ChangeKind.PURCHASE_DECIDED})

_CLAIM_TYPES: dict[ClaimCode, ClaimType] = {
    **dict.fromkeys(
        (
            ClaimCode.WITHDRAWN,
            ClaimCode.CANCEL_REQUESTED,
            ClaimCode.CANCELLING,
            ClaimCode.CANCELED,
            ClaimCode.UNPAID_CANCELED,
        ),
        ClaimType.CANCEL,
    ),
    **dict.fromkeys(
        (
            ClaimCode.RETURN_REQUESTED,
            ClaimCode.RETURNING,
            ClaimCode.RETURNED,
            ClaimCode.NON_RECEIPT_REFUNDED,
            ClaimCode.NON_RECEIPT_PARTLY_REFUNDED,
        ),
        ClaimType.RETURN,
    ),
    **dict.fromkeys(
        (ClaimCode.EXCHANGE_REQUESTED, ClaimCode.EXCHANGE_APPROVED, ClaimCode.REDELIVERING),
        ClaimType.EXCHANGE,
    ),
}

_CANCELED_CODES = frozenset({ClaimCode.CANCELLING, ClaimCode.CANCELED, ClaimCode.UNPAID_CANCELED})


def _stamp(moment: datetime) -> str:
    return moment.astimezone(JST).strftime("%Y%m%d%H%M%S")


def _key(*parts: str) -> str:
    key = ":".join(("qoo10", *parts))
    if len(key) <= 300:
        return key
    return key[:250] + "#" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _status_code(row: Row) -> str:
    status = shipping_status(field(row, "ShippingStatus"))
    return status.value if status is not None else text(row, "ShippingStatus")


def _in_window(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment <= end


# --- detail → facts / claim state ----------------------------------------------------------------


def order_facts(row: Row) -> OrderFacts:
    """Rule facts from a GetShippingAndClaimInfoByOrderNo_V2 row."""
    claim = claim_code(field(row, "claimStatus"))
    return OrderFacts(
        shipping_status=shipping_status(field(row, "shippingStatus", "ShippingStatus")),
        open_cancel_request=claim == ClaimCode.CANCEL_REQUESTED,
        canceled=claim in _CANCELED_CODES,
    )


def claim_state(unit_id: str, row: Row) -> ClaimState:
    """The contract's claim view of one order (read before a dispatch, R29)."""
    status = shipping_status(field(row, "shippingStatus", "ShippingStatus"))
    claim = claim_code(field(row, "claimStatus"))
    ctype = _CLAIM_TYPES.get(claim) if claim is not None else None
    return ClaimState(
        unit_id=unit_id,
        status=status.value if status is not None else text(row, "shippingStatus"),
        claim_type=ctype.value if ctype is not None else None,
        claim_status=claim.value if claim is not None else None,
        open_cancel_request=claim == ClaimCode.CANCEL_REQUESTED,
        dispatched=status in DISPATCHED_STATUSES,
    )


#: ``ClaimState.status`` when the shipping status was not read (bulk claim view: the claim list
#: carries no shipping status).
UNREAD_STATUS = ""


def listed_claim_state(unit_id: str, rows: Iterable[Row]) -> ClaimState:
    """The claim view of one order from the GetClaimInfo_V3 rows listed for it under ClaimStat
    "cancel requested" (none = no open request). A row is an open request unless its
    ``claimStatus`` clearly reads another code (an unreadable status counts as open: R25's safe
    side, see codes.OPEN_CANCEL_REQUEST_STAT). ``status`` is :data:`UNREAD_STATUS`;
    ``dispatched`` is True only when a row carries a readable shipping date."""
    open_request = False
    dispatched = False
    for row in rows:
        claim = claim_code(field(row, "claimStatus"))
        if claim in (None, ClaimCode.CANCEL_REQUESTED):
            open_request = True
        try:
            dispatched = dispatched or parse_qoo10_datetime(field(row, "shippingDate")) is not None
        except ValueError:
            pass
    return ClaimState(
        unit_id=unit_id,
        status=UNREAD_STATUS,
        claim_type=ClaimType.CANCEL.value if open_request else None,
        claim_status=ClaimCode.CANCEL_REQUESTED.value if open_request else None,
        open_cancel_request=open_request,
        dispatched=dispatched,
    )


def state_facts(state: ClaimState) -> OrderFacts:
    """Rule facts from a :class:`ClaimState` (either view)."""
    try:
        status: ShippingStatus | None = ShippingStatus(state.status)
    except ValueError:
        status = None
    try:
        claim: ClaimCode | None = ClaimCode(state.claim_status) if state.claim_status else None
    except ValueError:
        claim = None
    return OrderFacts(
        shipping_status=status,
        open_cancel_request=state.open_cancel_request,
        canceled=claim in _CANCELED_CODES,
    )


def bulk_outcomes(rows: Iterable[Row]) -> dict[str, tuple[int | None, str]]:
    """Per order number, the (result code, text) of a bulk answer (SetSendingInfoBulk).

    The code is None — an unknown outcome — when the row's code cannot be read or the order is
    answered more than once with different codes. Orders without a row are absent."""
    found: dict[str, tuple[int | None, str]] = {}
    for row in rows:
        low = {k.lower(): v for k, v in row.items()}  # once per row: up to 500 rows per call
        order_no = text(low, *BULK_ROW_ORDER_FIELDS)
        if not order_no:
            continue
        raw = field(low, *BULK_ROW_CODE_FIELDS)
        try:
            code: int | None = int(str(raw).strip()) if raw is not None else None
        except ValueError:
            code = None
        message = text(low, *BULK_ROW_MESSAGE_FIELDS)
        if order_no in found and found[order_no][0] != code:
            code = None
        found[order_no] = (code, message)
    return found


def ordered_quantity(row: Row) -> int:
    value = field(row, "orderQty", "OrderQty")
    return int(value) if value is not None else 0


# --- list rows → changes -------------------------------------------------------------------------


def _address(row: Row) -> Address:
    def cut(value: str, size: int) -> str:
        return (value or "-")[:size]

    return Address(
        name=cut(text(row, "Receiver", "receiver", "Buyer"), 100),
        phone=cut(text(row, "ReceiverMobile", "ReceiverTel", "BuyerMobile", "BuyerTel"), 40),
        zip_code=cut(text(row, "ZipCode", "zipCode"), 16),
        line1=cut(text(row, "Address1", "ShippingAddress", "shippingAddr"), 300),
        line2=text(row, "Address2")[:300],
    )


def _line(row: Row) -> ChannelLine:
    qty = int(field(row, "OrderQty") or 0)
    price = decimal(row, "OrderPrice") or Decimal(0)
    total = decimal(row, "Total", "SettlePrice")
    title = text(row, "ItemTitle")
    option = text(row, "Option")
    return ChannelLine(
        unit_id=text(row, "OrderNo"),
        sku=text(row, "SellerItemCode", "OptionCode", "ItemNo") or "-",
        name=(f"{title} / {option}" if option else title)[:300],
        quantity=qty,
        unit_price=price,
        amount=total if total is not None else price * qty,
    )


def _unknown(
    row: Row, order_id: str, unit: str, at: datetime, account: str, why: str
) -> ChannelChange:
    """A row we cannot map: ingested as UNKNOWN (dead-lettered with the reason, not dropped)."""
    return ChannelChange(
        channel=Channel.QOO10,
        account=account,
        change_key=_key(unit or order_id, "unknown", _stamp(at), why[:40]),
        kind=ChangeKind.UNKNOWN,
        channel_order_id=order_id or unit or "?",
        unit_ids=[unit] if unit else [],
        changed_at=at,
        raw_type=why,
        extra={"row": {k: str(v) for k, v in row.items()}},
    )


def shipping_changes(
    rows: Iterable[Row], start: datetime, end: datetime, account: str = "default"
) -> list[ChannelChange]:
    """Facts from GetShippingInfo_v3 rows whose time lies in [start, end]: ORDER_PAID (per cart),
    DISPATCHED, DELIVERED, PURCHASE_DECIDED. A row that cannot be mapped gives UNKNOWN."""
    changes: list[ChannelChange] = []
    paid: dict[str, list[Row]] = {}
    for row in {text(r, "OrderNo"): r for r in rows}.values():
        order_no = text(row, "OrderNo")
        pack = text(row, "PackNo") or order_no
        try:
            paid_at = parse_qoo10_datetime(field(row, "PaymentDate"))
            shipped_at = parse_qoo10_datetime(field(row, "ShippingDate"))
            delivered_at = parse_qoo10_datetime(field(row, "DeliveredDate"))
            decided_at = parse_qoo10_datetime(field(row, PURCHASE_DECIDED_FIELD))
        except ValueError as exc:
            changes.append(_unknown(row, pack, order_no, end, account, f"bad date: {exc}"))
            continue
        raw = _status_code(row)
        common: dict[str, Any] = {
            "channel": Channel.QOO10,
            "account": account,
            "channel_order_id": pack,
            "unit_ids": [order_no],
            "raw_type": raw,
        }
        if _in_window(paid_at, start, end):
            paid.setdefault(pack, []).append(row)
        if shipped_at is not None and _in_window(shipped_at, start, end):
            corp = text(row, "DeliveryCompany")
            tracking = text(row, "TrackingNo")
            changes.append(
                ChannelChange(
                    **common,
                    change_key=_key(order_no, "dispatched", _stamp(shipped_at), tracking),
                    kind=ChangeKind.DISPATCHED,
                    changed_at=shipped_at,
                    carrier=carrier_of(corp),
                    tracking_number=tracking or None,
                    extra={"shipping_corp": corp},
                )
            )
        for kind, moment in (
            (ChangeKind.DELIVERED, delivered_at),
            (ChangeKind.PURCHASE_DECIDED, decided_at),
        ):
            if moment is not None and _in_window(moment, start, end):
                changes.append(
                    ChannelChange(
                        **common,
                        change_key=_key(order_no, kind.value),
                        kind=kind,
                        changed_at=moment,
                    )
                )
    for pack, lines in paid.items():
        changes.append(_order_paid(pack, lines, end, account))
    return changes


def _order_paid(pack: str, rows: list[Row], end: datetime, account: str) -> ChannelChange:
    rows = sorted(rows, key=lambda r: text(r, "OrderNo"))
    first = rows[0]
    order_nos = [text(r, "OrderNo") for r in rows]
    paid_at = parse_qoo10_datetime(field(first, "PaymentDate")) or end
    try:
        order = ChannelOrder(
            channel_order_id=pack,
            buyer_name=text(first, "Buyer")[:100],
            address=_address(first),
            payment_method=payment_method(text(first, "PaymentMethod")),
            paid_at=paid_at,
            lines=[_line(r) for r in rows],
        )
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        return _unknown(first, pack, order_nos[0], paid_at, account, f"bad order row: {exc}")
    return ChannelChange(
        channel=Channel.QOO10,
        account=account,
        change_key=_key(pack, "order_paid", "+".join(order_nos)),
        kind=ChangeKind.ORDER_PAID,
        channel_order_id=pack,
        unit_ids=order_nos,
        changed_at=paid_at,
        raw_type=_status_code(first),
        order=order,
        extra={"currency": text(first, "Currency")},
    )


def claim_changes(
    rows: Iterable[Row], start: datetime, end: datetime, account: str = "default"
) -> list[ChannelChange]:
    """Facts from GetClaimInfo_V3 rows whose change time lies in [start, end] (one per row, from
    its current claim status; see :data:`CLAIM_CHANGES`)."""
    changes: list[ChannelChange] = []
    for row in rows:
        order_no = text(row, "orderNo")
        pack = text(row, "packNo") or order_no
        raw = text(row, "claimStatus")
        try:
            requested = parse_qoo10_datetime(field(row, "requestDate"))
            completed = parse_qoo10_datetime(field(row, "cancelRefundDate")) or requested
        except ValueError as exc:
            changes.append(_unknown(row, pack, order_no, end, account, f"bad date: {exc}"))
            continue
        code = claim_code(raw)
        mapped = CLAIM_CHANGES.get(code) if code is not None else None
        if mapped is None:
            seen = completed or requested or end
            if _in_window(seen, start, end):
                changes.append(_unknown(row, pack, order_no, seen, account, f"claim {raw}"))
            continue
        kind, which = mapped
        facts = [(kind, requested if which == "request" else completed)]
        if code == ClaimCode.WITHDRAWN:  # the request it closes is a fact too (same key)
            facts.append((ChangeKind.CANCEL_REQUESTED, requested))
        request_stamp = _stamp(requested) if requested else "-"
        for fact, at in facts:
            if at is None or not _in_window(at, start, end):
                continue
            key = (
                _key(order_no, fact.value)
                if fact in _ONCE_PER_LINE
                else _key(order_no, fact.value, request_stamp)
            )
            changes.append(
                ChannelChange(
                    channel=Channel.QOO10,
                    account=account,
                    change_key=key,
                    kind=fact,
                    channel_order_id=pack,
                    unit_ids=[order_no],
                    changed_at=at,
                    raw_type=raw,
                    claim_id=f"{order_no}:{request_stamp}",
                    reason=text(row, "reason") or None,
                    tracking_number=text(row, "trackingNoReturn") or None,
                    carrier=carrier_of(text(row, "deliveryCompanyReturn")),
                    extra={"claim_status": code.value if code is not None else raw},
                )
            )
    return changes
