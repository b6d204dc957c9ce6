"""Change-feed entries + product-order details → :class:`topics.changes.ChannelChange` facts.

Naver's feed keeps one record per product order holding only its *latest* change, and the
record's status can lag (spec §3.5). So the connector never trusts the feed entry alone: it reads
each product order's detail and emits the **facts** that detail proves, each with a key that
depends only on the fact itself, so re-reading any window yields the same keys (R17):

=========================  ==============================================  ======================
fact                       key (``naverpay:`` + …)                         kind
=========================  ==============================================  ======================
order paid                 ``<orderId>:PAYED:<paymentDate>``               ORDER_PAID (all lines)
address changed (feed)     ``<orderId>:DELIVERY_ADDRESS_CHANGED:<date>``   ADDRESS_CHANGED (R12)
address flag, still PAYED  ``<orderId>:ADDRESS:<hash of address>``         ADDRESS_CHANGED (R12)
dispatched                 ``<poId>:DISPATCHED:<company>:<tracking>``      DISPATCHED (R15)
delivered                  ``<poId>:DELIVERED:<deliveredDate>``            DELIVERED
purchase decided           ``<poId>:PURCHASE_DECIDED:<decisionDate>``      PURCHASE_DECIDED
claim phase                ``<poId>:<claimId>:<phase status>``             see mapping.CLAIM_KINDS
return hold / release      ``<poId>:<claimId>:HOLDBACK[_RELEASED]:<date>`` RETURN_HELD / _RELEASED
anything else              ``<poId>:<lastChangedType>:<lastChangedDate>``  UNKNOWN (never dropped)
=========================  ==============================================  ======================

An order's ORDER_PAID always comes first for it (sorted by time, then this order of kinds).
Unpaid orders (``PAY_WAITING``) produce nothing until paid. An ADDRESS_CHANGED keyed by hash
may repeat a change already seen under its feed key: applying an address equal to the stored
one must be a no-op in the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.naverpay.dates import parse_dt, parse_opt, stamp
from connectors.naverpay.endpoints import LAST_CHANGED_TYPES
from connectors.naverpay.mapping import (
    REQUEST_PHASE,
    Claim,
    claim_kind,
    completed_claims,
    current_claim,
    is_dispatched,
    is_guest_order,
    member_grade,
)
from connectors.naverpay.orders import address_hash, channel_order, money, naver_address
from store.carriers import UnknownCarrierCodeError, from_channel_code
from store.domain import Channel
from topics.changes import ChangeKind, ChannelChange

#: Feed types whose fact the detail cannot show: passed on as UNKNOWN (dead-lettered, seen).
NON_STATE_TYPES = frozenset({"EXCHANGE_OPTION", "GIFT_RECEIVED", "HOPE_DELIVERY_INFO_CHANGED"})
_KIND_RANK = {ChangeKind.ORDER_PAID: 0, ChangeKind.ADDRESS_CHANGED: 1}
_UNPAID = frozenset({"PAYMENT_WAITING", "CANCELED_BY_NOPAYMENT"})


@dataclass(frozen=True)
class FeedEntry:
    """One ``lastChangeStatuses`` item."""

    order_id: str
    product_order_id: str
    type: str
    changed_at: datetime
    status: str | None = None
    claim_type: str | None = None
    claim_status: str | None = None
    address_changed: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> FeedEntry:
        """``ValueError`` when an id, the type or the date is missing or malformed."""
        po, order = item.get("productOrderId"), item.get("orderId")
        kind = item.get("lastChangedType")
        if not po or not order or not kind:
            raise ValueError(f"feed item without ids or type: {sorted(item)}")
        return cls(
            order_id=str(order),
            product_order_id=str(po),
            type=str(kind),
            changed_at=parse_dt(str(item.get("lastChangedDate"))),
            status=item.get("productOrderStatus"),
            claim_type=item.get("claimType"),
            claim_status=item.get("claimStatus"),
            address_changed=bool(item.get("receiverAddressChanged", False)),
            raw=dict(item),
        )


def latest_per_product_order(entries: Iterable[FeedEntry]) -> dict[str, FeedEntry]:
    """One entry per product order: the latest (a product order can appear in several
    windows of one read when its record moved)."""
    out: dict[str, FeedEntry] = {}
    for entry in entries:
        seen = out.get(entry.product_order_id)
        if seen is None or entry.changed_at >= seen.changed_at:
            out[entry.product_order_id] = entry
    return out


# --- the builder -------------------------------------------------------------------------------
class _Facts:
    def __init__(self, account: str, now: datetime) -> None:
        self.account = account
        self.now = now
        self.changes: dict[str, ChannelChange] = {}
        self.covered: set[str] = set()

    def add(
        self,
        key: str,
        kind: ChangeKind,
        order_id: str,
        units: Sequence[str],
        at: datetime | None,
        raw_type: str,
        **fields: Any,
    ) -> None:
        key = f"naverpay:{key}"[:300]
        self.covered.update(units)
        seen = self.changes.get(key)
        if seen is not None:
            merged = sorted(set(seen.unit_ids) | set(units))
            self.changes[key] = seen.model_copy(update={"unit_ids": merged})
            return
        self.changes[key] = ChannelChange(
            channel=Channel.NAVERPAY,
            account=self.account,
            change_key=key,
            kind=kind,
            channel_order_id=order_id,
            unit_ids=sorted(set(units)),
            changed_at=at or self.now,
            raw_type=raw_type,
            **fields,
        )

    def result(self) -> list[ChannelChange]:
        return sorted(
            self.changes.values(),
            key=lambda c: (c.order is None, c.changed_at, _KIND_RANK.get(c.kind, 9), c.change_key),
        )


def build_changes(
    entries: Iterable[FeedEntry],
    details: Mapping[str, Mapping[str, Any]],
    *,
    account: str = "default",
    now: datetime | None = None,
) -> list[ChannelChange]:
    """Every fact proven by ``details`` (keyed by productOrderId; siblings included so an
    ORDER_PAID lists all lines) plus the feed-only facts of ``entries``. Pure."""
    facts = _Facts(account, now or datetime.now(UTC))
    latest = latest_per_product_order(entries)
    by_order: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for detail in details.values():
        order_id = (detail.get("order") or {}).get("orderId")
        if order_id:
            by_order[str(order_id)].append(detail)
    for order_id, group in by_order.items():
        _order_facts(facts, order_id, group)
    for po_id, detail in details.items():
        _product_order_facts(facts, detail, latest.get(po_id))
    for entry in latest.values():
        _feed_facts(facts, entry, details.get(entry.product_order_id))
    return facts.result()


def _order_facts(facts: _Facts, order_id: str, group: list[Mapping[str, Any]]) -> None:
    order = group[0].get("order") or {}
    paid_at = parse_opt(order.get("paymentDate"))
    paid = [d for d in group if (d.get("productOrder") or {}).get("productOrderStatus")]
    paid = [d for d in paid if d["productOrder"]["productOrderStatus"] not in _UNPAID]
    if paid_at is None or not paid:
        return
    payload = channel_order(group)
    facts.add(
        f"{order_id}:PAYED:{stamp(paid_at)}",
        ChangeKind.ORDER_PAID,
        order_id,
        [line.unit_id for line in payload.lines],
        paid_at,
        "PAYED",
        order=payload,
        extra={
            "guest_order": is_guest_order(group[0]),  # R19
            "member_grade": member_grade(group[0]),
            "payment_means": str(order.get("paymentMeans") or ""),
            "general_payment_amount": str(money(order.get("generalPaymentAmount"))),
        },
    )


def _product_order_facts(facts: _Facts, detail: Mapping[str, Any], entry: FeedEntry | None) -> None:
    po = detail.get("productOrder") or {}
    order = detail.get("order") or {}
    po_id, order_id = str(po.get("productOrderId", "")), str(order.get("orderId", ""))
    if not po_id or not order_id or po.get("productOrderStatus") in _UNPAID:
        return
    fallback = entry.changed_at if entry else parse_opt(order.get("paymentDate"))
    status = str(po.get("productOrderStatus"))
    delivery = detail.get("delivery") or {}
    if is_dispatched(detail) and (delivery or status == "DELIVERING"):
        code = str(delivery.get("deliveryCompany") or "")
        tracking = str(delivery.get("trackingNumber") or "")
        try:
            carrier = from_channel_code(code, "naverpay") if code else None
        except UnknownCarrierCodeError:
            carrier = None
        facts.add(
            f"{po_id}:DISPATCHED:{code or '-'}:{tracking or '-'}",
            ChangeKind.DISPATCHED,
            order_id,
            [po_id],
            parse_opt(delivery.get("sendDate")) or fallback,
            "DISPATCHED",
            carrier=carrier,
            tracking_number=tracking or None,
            extra={
                "carrier_code": code,
                "delivery_method": str(delivery.get("deliveryMethod") or ""),
                "quantity": int(po.get("quantity") or 0),
            },
        )
    delivered = parse_opt(delivery.get("deliveredDate"))
    if delivered is not None:
        facts.add(
            f"{po_id}:DELIVERED:{stamp(delivered)}",
            ChangeKind.DELIVERED,
            order_id,
            [po_id],
            delivered,
            "DELIVERED",
        )
    decided = parse_opt(po.get("decisionDate"))
    if status == "PURCHASE_DECIDED":
        facts.add(
            f"{po_id}:PURCHASE_DECIDED:{stamp(decided) if decided else '-'}",
            ChangeKind.PURCHASE_DECIDED,
            order_id,
            [po_id],
            decided or fallback,
            "PURCHASE_DECIDED",
        )
    claims = completed_claims(detail)
    current = current_claim(detail)
    if current is not None and all(c.claim_id != current.claim_id for c in claims):
        claims.append(current)
    for claim in claims:
        _claim_facts(facts, claim, order_id, po_id, fallback, status)


def _claim_facts(
    facts: _Facts, claim: Claim, order_id: str, po_id: str, fallback: datetime | None, status: str
) -> None:
    block = claim.block
    kind = claim_kind(claim.claim_type, claim.claim_status)
    phase = "REQUESTED" if claim.claim_status in REQUEST_PHASE else claim.claim_status
    claim_id = claim.claim_id or stamp(
        parse_opt(block.get("claimRequestDate")) or fallback or facts.now
    )
    at = _claim_time(block, claim.claim_status) or fallback
    reason = block.get("cancelReason") or block.get("returnReason") or block.get("exchangeReason")
    extra: dict[str, Any] = {
        "claim_type": claim.claim_type,
        "claim_status": claim.claim_status,
        "product_order_status": status,
    }
    if claim.claim_status == "COLLECT_DONE":
        extra["collect_done"] = True
    if block.get("requestChannel"):
        extra["request_channel"] = str(block["requestChannel"])
    facts.add(
        f"{po_id}:{claim_id}:{claim.claim_type}:{phase}",
        kind,
        order_id,
        [po_id],
        at,
        f"{claim.claim_type}:{claim.claim_status}",
        claim_id=claim.claim_id or None,
        reason=str(reason) if reason else None,
        extra=extra,
    )
    hold = block.get("holdbackStatus")
    if claim.claim_type == "RETURN" and hold in ("HOLDBACK", "RELEASED"):
        held = hold == "HOLDBACK"
        when = parse_opt(block.get("holdbackConfigDate" if held else "holdbackReleaseDate"))
        facts.add(
            f"{po_id}:{claim_id}:{'HOLDBACK' if held else 'HOLDBACK_RELEASED'}:"
            f"{stamp(when) if when else '-'}",
            ChangeKind.RETURN_HELD if held else ChangeKind.RETURN_HOLD_RELEASED,
            order_id,
            [po_id],
            when or at,
            f"RETURN:{hold}",
            claim_id=claim.claim_id or None,
            reason=str(block.get("holdbackReason") or "") or None,
            extra={
                "fee": str(
                    money(block.get("claimDeliveryFeeDemandAmount"))
                    + money(block.get("etcFeeDemandAmount"))
                ),
                "holdback_detail": str(block.get("holdbackDetailedReason") or ""),
            },
        )


def _claim_time(block: Mapping[str, Any], status: str) -> datetime | None:
    names = {
        "CANCEL_DONE": ("cancelCompletedDate", "cancelApprovalDate"),
        "RETURN_DONE": ("returnCompletedDate",),
        "COLLECT_DONE": ("collectCompletedDate",),
        "EXCHANGE_REDELIVERING": ("reDeliveryOperationDate",),
    }.get(status, ())
    for name in (*names, "claimRequestDate"):
        when = parse_opt(block.get(name))
        if when is not None:
            return when
    return None


def _feed_facts(facts: _Facts, entry: FeedEntry, detail: Mapping[str, Any] | None) -> None:
    po_id, order_id = entry.product_order_id, entry.order_id
    status = str(((detail or {}).get("productOrder") or {}).get("productOrderStatus") or "")
    if detail is not None and entry.type == "DELIVERY_ADDRESS_CHANGED":
        address = naver_address((detail.get("productOrder") or {}).get("shippingAddress"))
        facts.add(
            f"{order_id}:DELIVERY_ADDRESS_CHANGED:{stamp(entry.changed_at)}",
            ChangeKind.ADDRESS_CHANGED,
            order_id,
            [po_id],
            entry.changed_at,
            entry.type,
            address=address,
        )
    elif (
        detail is not None
        and entry.address_changed
        and status == "PAYED"
        and current_claim(detail) is None
    ):
        address = naver_address((detail.get("productOrder") or {}).get("shippingAddress"))
        facts.add(
            f"{order_id}:ADDRESS:{address_hash(address)}",
            ChangeKind.ADDRESS_CHANGED,
            order_id,
            [po_id],
            entry.changed_at,
            f"{entry.type}:receiverAddressChanged",
            address=address,
        )
    unknown_type = entry.type not in LAST_CHANGED_TYPES or entry.type in NON_STATE_TYPES
    unexplained = po_id not in facts.covered and entry.type != "PAY_WAITING"
    if detail is None and entry.type == "PAY_WAITING":
        return
    if unknown_type or unexplained or detail is None:
        facts.add(
            f"{po_id}:{entry.type}:{stamp(entry.changed_at)}",
            ChangeKind.UNKNOWN,
            order_id,
            [po_id],
            entry.changed_at,
            entry.type,
            extra={
                "feed_status": entry.status,
                "detail_status": status or None,
                "detail_missing": detail is None,
            },
        )
