"""Pure mapping between the domain and Naver's vocabulary (no I/O).

Outbound: :func:`dispatch_payload` (a :class:`DispatchItem` → one ``dispatchProductOrders``
element), :func:`naver_cancel_reason`, and the two Naver-specific shipping rules:

* **R15** :func:`collapse_partial_shipment` — Naver dispatches whole product orders only; a
  partial physical shipment becomes a whole-unit dispatch plus a :class:`CollapseRecord`.
* **R16** :func:`plan_cancel` — a cancel is whole-line (partial quantity refused); a cancel of an
  already-dispatched unit becomes a return request. :func:`inbound_cancel_kind` is the same rule
  for a Naver cancel arriving for a line the store already shipped.

Inbound helpers: :func:`claim_state` (detail → :class:`ClaimState`, R29),
:func:`current_claim` / :func:`completed_claims` (both detail shapes: ``currentClaim`` /
``completedClaims`` and the legacy top-level ``cancel``/``return``/``exchange`` blocks),
and **R19** :func:`is_guest_order` / :func:`member_grade` (Naver orders never carry a grade).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.contract import ClaimState, DispatchItem, ItemResult
from connectors.errors import ValidationError
from connectors.naverpay import endpoints as ep
from connectors.naverpay.dates import format_dt
from connectors.naverpay.endpoints import CANCEL_REASONS
from store.carriers import Carrier, UnknownCarrierCodeError, channel_code
from store.domain import InvoiceKind
from store.errors import SplitNotAllowedError
from topics.changes import ChangeKind

# --- statuses ----------------------------------------------------------------------------------
PRODUCT_ORDER_STATUSES = ep.PRODUCT_ORDER_STATUSES  # spec §4.3, one definition
#: Statuses in which the goods have left the seller.
DISPATCHED_STATUSES = frozenset(
    {"DELIVERING", "DELIVERED", "PURCHASE_DECIDED", "EXCHANGED", "RETURNED"}
)

#: (claimType, claimStatus) → the ChangeKind of that fact. Missing pairs map to UNKNOWN.
CLAIM_KINDS: dict[tuple[str, str], ChangeKind] = {
    ("CANCEL", "CANCEL_REQUEST"): ChangeKind.CANCEL_REQUESTED,
    ("CANCEL", "CANCELING"): ChangeKind.CANCEL_REQUESTED,
    ("CANCEL", "CANCEL_DONE"): ChangeKind.CANCELED,
    ("CANCEL", "CANCEL_REJECT"): ChangeKind.CANCEL_WITHDRAWN,
    ("ADMIN_CANCEL", "ADMIN_CANCELING"): ChangeKind.CANCEL_REQUESTED,
    ("ADMIN_CANCEL", "ADMIN_CANCEL_DONE"): ChangeKind.CANCELED,
    ("ADMIN_CANCEL", "ADMIN_CANCEL_REJECT"): ChangeKind.CANCEL_WITHDRAWN,
    ("RETURN", "RETURN_REQUEST"): ChangeKind.RETURN_REQUESTED,
    ("RETURN", "COLLECTING"): ChangeKind.RETURN_REQUESTED,
    ("RETURN", "COLLECT_DONE"): ChangeKind.RETURN_REQUESTED,
    ("RETURN", "RETURN_DONE"): ChangeKind.RETURNED,
    ("EXCHANGE", "EXCHANGE_REQUEST"): ChangeKind.EXCHANGE_REQUESTED,
    ("EXCHANGE", "COLLECTING"): ChangeKind.EXCHANGE_REQUESTED,
    ("EXCHANGE", "COLLECT_DONE"): ChangeKind.EXCHANGE_REQUESTED,
    ("EXCHANGE", "EXCHANGE_REDELIVERING"): ChangeKind.EXCHANGE_REQUESTED,
    ("EXCHANGE", "EXCHANGE_DONE"): ChangeKind.EXCHANGED,
}
#: Claim statuses that belong to the same "requested" fact (one key for the request phase).
REQUEST_PHASE = frozenset({"CANCEL_REQUEST", "CANCELING", "RETURN_REQUEST", "COLLECTING"})
#: Claim statuses after which a claim is finished.
FINISHED_CLAIM_STATUSES = frozenset(
    {
        "CANCEL_DONE",
        "CANCEL_REJECT",
        "RETURN_DONE",
        "RETURN_REJECT",
        "EXCHANGE_DONE",
        "EXCHANGE_REJECT",
        "ADMIN_CANCEL_DONE",
        "ADMIN_CANCEL_REJECT",
        "PURCHASE_DECISION_HOLDBACK_RELEASE",
    }
)
#: An open buyer cancel request: dispatching refuses it (R29).
OPEN_CANCEL_STATUSES = frozenset({"CANCEL_REQUEST"})

_CLAIM_BLOCK = {"CANCEL": "cancel", "ADMIN_CANCEL": "cancel", "RETURN": "return"}
_CLAIM_BLOCK["EXCHANGE"] = "exchange"


def claim_kind(claim_type: str, claim_status: str) -> ChangeKind:
    return CLAIM_KINDS.get((claim_type, claim_status), ChangeKind.UNKNOWN)


@dataclass(frozen=True)
class Claim:
    """One claim of a product order, whatever detail shape it came from."""

    claim_id: str
    claim_type: str
    claim_status: str
    block: Mapping[str, Any]


def current_claim(detail: Mapping[str, Any]) -> Claim | None:
    """The product order's latest claim: ``productOrder.claim*`` plus its block from
    ``currentClaim`` (new shape) or the legacy top-level block."""
    po = detail.get("productOrder") or {}
    ctype, cstatus = po.get("claimType"), po.get("claimStatus")
    if not ctype or not cstatus:
        return None
    name = _CLAIM_BLOCK.get(str(ctype))
    block: Mapping[str, Any] = {}
    if name:
        block = (detail.get("currentClaim") or {}).get(name) or detail.get(name) or {}
    claim_id = po.get("claimId") or block.get("claimId") or ""
    return Claim(str(claim_id), str(ctype), str(cstatus), block)


def completed_claims(detail: Mapping[str, Any]) -> list[Claim]:
    """Finished claims from ``completedClaims[]`` (absent in the legacy shape)."""
    out = []
    for item in detail.get("completedClaims") or []:
        if isinstance(item, Mapping) and item.get("claimType") and item.get("claimStatus"):
            out.append(
                Claim(
                    str(item.get("claimId") or ""),
                    str(item["claimType"]),
                    str(item["claimStatus"]),
                    item,
                )
            )
    return out


def is_dispatched(detail: Mapping[str, Any]) -> bool:
    po = detail.get("productOrder") or {}
    delivery = detail.get("delivery") or {}
    return po.get("productOrderStatus") in DISPATCHED_STATUSES or bool(delivery.get("sendDate"))


def claim_state(detail: Mapping[str, Any]) -> ClaimState:
    """R29: the marketplace's claim view of one product order, read before a dispatch."""
    po = detail.get("productOrder") or {}
    claim = current_claim(detail)
    return ClaimState(
        unit_id=str(po.get("productOrderId", "")),
        status=str(po.get("productOrderStatus", "")),
        claim_type=claim.claim_type if claim else None,
        claim_status=claim.claim_status if claim else None,
        open_cancel_request=bool(
            claim and claim.claim_type == "CANCEL" and claim.claim_status in OPEN_CANCEL_STATUSES
        ),
        dispatched=is_dispatched(detail),
    )


# --- R19 ----------------------------------------------------------------------------------------
def is_guest_order(detail: Mapping[str, Any]) -> bool:
    """R19: a Naver order-type checkout order counts as a guest order, always."""
    return True


def member_grade(detail: Mapping[str, Any]) -> str | None:
    """R19: no member grade accrues for Naver orders (the API has no such field): None."""
    return None


# --- dispatch ----------------------------------------------------------------------------------
#: InvoiceKind → Naver ``deliveryMethod``. Quick-service and visit-pickup dispatches are sent
#: without company and tracking number (spec §5.3; R28 numbers stay in the store).
DELIVERY_METHOD_BY_KIND: dict[InvoiceKind, str] = {
    InvoiceKind.PARCEL: "DELIVERY",
    InvoiceKind.QUICK: "QUICK_SVC",
    InvoiceKind.VISIT_PICKUP: "VISIT_RECEIPT",
}


def dispatch_payload(item: DispatchItem) -> dict[str, str]:
    """One ``dispatchProductOrders`` element. Unused keys are omitted (an empty
    ``deliveryCompanyCode`` is a 400 on Naver). Raises ``UnknownCarrierCodeError`` when the
    carrier has no Naver code."""
    method = DELIVERY_METHOD_BY_KIND[item.kind]
    body = {
        "productOrderId": item.unit_id,
        "deliveryMethod": method,
        "dispatchDate": format_dt(item.dispatched_at),
    }
    if method == "DELIVERY":
        body["deliveryCompanyCode"] = channel_code(item.carrier, "naverpay")
        body["trackingNumber"] = item.tracking_number
    return body


def naver_carrier_code(carrier: Carrier) -> str | None:
    try:
        return channel_code(carrier, "naverpay")
    except UnknownCarrierCodeError:
        return None


# --- R15 ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShippedLine:
    """An OMS line of one Naver product order and what physically left the warehouse."""

    line_id: str
    quantity: int
    shipped_quantity: int


@dataclass(frozen=True)
class CollapseRecord:
    """R15: what the store records on the unit's lines after a whole-unit dispatch."""

    unit_id: str
    shipped_quantity: int
    channel_quantity: int
    line_ids: tuple[str, ...]

    @property
    def collapsed(self) -> bool:
        return self.shipped_quantity < self.channel_quantity


def collapse_partial_shipment(
    unit_id: str,
    lines: Sequence[ShippedLine],
    *,
    carrier: Carrier,
    tracking_number: str,
    dispatched_at: Any,
    kind: InvoiceKind = InvoiceKind.PARCEL,
) -> tuple[DispatchItem, CollapseRecord]:
    """R15: the dispatch sent to Naver covers the whole product order even when only part of
    its quantity shipped. ``ValueError`` when nothing shipped or a line ships more than it has.
    """
    if not lines:
        raise ValueError(f"no lines for unit {unit_id}")
    for line in lines:
        if not 0 <= line.shipped_quantity <= line.quantity:
            raise ValueError(
                f"line {line.line_id}: shipped {line.shipped_quantity} of {line.quantity}"
            )
    shipped = sum(line.shipped_quantity for line in lines)
    if shipped == 0:
        raise ValueError(f"unit {unit_id}: nothing shipped, nothing to dispatch")
    item = DispatchItem(unit_id, carrier, tracking_number, dispatched_at, kind)
    record = CollapseRecord(
        unit_id=unit_id,
        shipped_quantity=shipped,
        channel_quantity=sum(line.quantity for line in lines),
        line_ids=tuple(line.line_id for line in lines),
    )
    return item, record


# --- R16 ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CancelUnit:
    unit_id: str
    quantity: int
    cancel_quantity: int
    dispatched: bool


@dataclass(frozen=True)
class CancelPlan:
    cancel: tuple[str, ...]  # seller cancel requests (whole product orders)
    returns: tuple[str, ...]  # already dispatched: sent as return requests instead


def plan_cancel(units: Sequence[CancelUnit]) -> CancelPlan:
    """R16: a naverpay line is cancelled whole; a partial quantity raises
    :class:`SplitNotAllowedError`; a dispatched unit goes to ``returns``."""
    cancel: list[str] = []
    returns: list[str] = []
    for unit in units:
        if unit.cancel_quantity != unit.quantity:
            raise SplitNotAllowedError(
                "R16",
                f"naverpay cancels whole product orders: {unit.unit_id} has "
                f"{unit.quantity}, asked {unit.cancel_quantity}",
            )
        (returns if unit.dispatched else cancel).append(unit.unit_id)
    return CancelPlan(tuple(cancel), tuple(returns))


def inbound_cancel_kind(line_dispatched: bool) -> ChangeKind:
    """R16: a Naver cancel for a line the store already dispatched is handled as a return."""
    return ChangeKind.RETURN_REQUESTED if line_dispatched else ChangeKind.CANCELED


# --- reasons -----------------------------------------------------------------------------------
#: The OMS's seller-cancel reasons (topics.commands.SellerCancel) → Naver ``cancelReason``.
#: ``OTHER`` has no API value (Naver's ``ETC`` cannot be sent) and is refused.
CANCEL_REASON_MAP: dict[str, str] = {
    "SOLD_OUT": "SOLD_OUT",
    "DELAYED_DELIVERY": "DELAYED_DELIVERY",
    "UNDELIVERABLE_AREA": "DELAYED_DELIVERY",
    "CHANGED_MIND": "INTENT_CHANGED",
    "OPTION_CHANGE": "COLOR_AND_SIZE",
}


def naver_cancel_reason(reason: str) -> str:
    """Naver's ``cancelReason`` for an OMS or Naver reason; ``ValidationError`` otherwise."""
    if reason in CANCEL_REASONS:
        return reason
    try:
        return CANCEL_REASON_MAP[reason]
    except KeyError:
        allowed = sorted(set(CANCEL_REASON_MAP) | CANCEL_REASONS)
        raise ValidationError(
            f"naverpay has no cancel reason {reason!r}; use one of {allowed}",
            code="UNSUPPORTED_REASON",
        ) from None


# --- R14 ----------------------------------------------------------------------------------------
def return_completion_steps(fee_payment: str, *, held: bool, money_received: bool) -> list[str]:
    """R14: the calls that complete a held return. Fee deducted from the refund → approve while
    held. Fee by transfer or in the box → release the hold first, approve only once the money
    arrived (until then the list holds only the release, or nothing)."""
    if not held:
        return ["return_approve"]
    if fee_payment == "deduct_refund":
        return ["return_approve"]
    if fee_payment not in ("transfer", "in_box"):
        raise ValueError(f"unknown fee payment {fee_payment!r}")
    return ["return_hold_release", "return_approve"] if money_received else ["return_hold_release"]


# --- processing responses → ItemResult ------------------------------------------------------------
def item_results(
    data: Mapping[str, Any] | None, requested: Sequence[str], *, trace_id: str | None = None
) -> list[ItemResult]:
    """One :class:`ItemResult` per requested id from Naver's processing answer (spec §5.2):
    ``successProductOrderIds`` (or confirm's ``successProductOrderInfos``, whose
    ``isReceiverAddressChanged`` lands in ``detail['receiver_address_changed']`` — R12) and
    ``failProductOrderInfos``. An id in neither list is a retryable ``NO_RESULT``: re-read the
    detail before repeating the write."""
    data = data or {}
    infos = {
        str(i.get("productOrderId")): i
        for i in data.get("successProductOrderInfos") or []
        if isinstance(i, Mapping)
    }
    ok = {str(i) for i in data.get("successProductOrderIds") or []} | set(infos)
    fails = {
        str(f.get("productOrderId")): f
        for f in data.get("failProductOrderInfos") or []
        if isinstance(f, Mapping)
    }
    trace = {"trace_id": trace_id} if trace_id else {}
    out = []
    for unit in requested:
        if unit in fails:
            fail = fails[unit]
            out.append(
                ItemResult(
                    unit,
                    False,
                    str(fail.get("code") or "9999"),
                    str(fail.get("message") or ""),
                    detail=dict(trace),
                )
            )
        elif unit in ok:
            detail: dict[str, Any] = dict(trace)
            if unit in infos:
                detail["receiver_address_changed"] = bool(
                    infos[unit].get("isReceiverAddressChanged", False)
                )
            out.append(ItemResult(unit, True, detail=detail))
        else:
            out.append(
                ItemResult(
                    unit,
                    False,
                    "NO_RESULT",
                    "naverpay answered nothing for this product order",
                    retryable=True,
                    detail=dict(trace),
                )
            )
    return out
