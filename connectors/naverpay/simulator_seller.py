"""Seller writes against the simulated world (what the API endpoints do), per product order.

Each method either changes the world and records the side effect in the ledger, or raises
:class:`~connectors.naverpay.sim_state.Refusal` with Naver's per-item code (spec §5.4). The
behaviour choices for UNCONFIRMED points are listed in :mod:`connectors.naverpay.simulator`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.naverpay import endpoints as ep
from connectors.naverpay.dates import parse_dt
from connectors.naverpay.sim_state import (
    DAY_MS,
    MAX_DELAY_DAYS,
    OTHER_CARRIER_CODES,
    Refusal,
    SimClaim,
    SimProductOrder,
    ms_text,
    to_ms,
)
from connectors.naverpay.simulator import NaverWorld
from store.carriers import UnknownCarrierCodeError, from_channel_code
from store.domain import InvoiceKind
from store.errors import InvalidInvoiceError
from store.invoices import validate_invoice


class SellerDesk:
    """The seller-side operations of one :class:`NaverWorld`."""

    def __init__(self, world: NaverWorld) -> None:
        self.world = world

    def confirm(self, po_id: str) -> bool:
        po = self.world.po(po_id)
        if po.status != "PAYED" or po.open_claim():
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot confirm a {po.status} product order")
        if po.place_status == "OK":
            raise Refusal(ep.CODE_SAME_STATE, "already confirmed")
        po.place_status, po.placed_at = "OK", self.world.now()
        self.world.ledger.record("confirm", po_id)
        return po.address_changed

    def dispatch(self, item: dict[str, Any], *, source: str = "api") -> None:
        """One ``dispatchProductOrders`` element (top-level shape already checked)."""
        po_id = str(item.get("productOrderId", ""))
        po = self.world.po(po_id)
        method = item.get("deliveryMethod") or "DELIVERY"
        company, tracking = item.get("deliveryCompanyCode"), item.get("trackingNumber")
        if method not in ep.DELIVERY_METHODS:
            raise Refusal("104117", f"delivery method {method} cannot be used")
        if method in ep.TRACKED_METHODS:
            number = self._check_invoice(company, tracking)
        else:
            number = str(tracking or "")
        claim = po.open_claim()
        if po.status != "PAYED" or (claim is not None and claim.status != "CANCEL_REQUEST"):
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot dispatch a {po.status} product order")
        if self.world.require_confirm and po.place_status != "OK":
            raise Refusal(ep.CODE_NOT_CONFIRMED, "confirm the product order first")
        sent = self.world.now()
        if item.get("dispatchDate"):
            try:
                sent = to_ms(parse_dt(str(item["dispatchDate"])))
            except ValueError:
                raise Refusal(ep.CODE_BAD_REQUEST, "dispatchDate is malformed") from None
        if claim is not None:  # R29: dispatching refuses the buyer's cancel request
            self.world.finish(po, "CANCEL_REJECT", self.world.now())
            self.world.ledger.record("cancel_refused_by_dispatch", po_id, claim_id=claim.claim_id)
        po.status = "DELIVERING"
        po.delivery = {
            "deliveryMethod": method,
            "deliveryCompany": company,
            "trackingNumber": number or None,
            "sendDate": sent,
            "deliveredDate": None,
        }
        self.world.bump(po_id, "DISPATCHED", self.world.now(), self.world.event_lag(None))
        op = "dispatch" if source == "api" else "seller_centre_dispatch"
        self.world.ledger.record(op, po_id, company=company, tracking=number, method=method)

    def _check_invoice(self, company: object, tracking: object) -> str:
        if not company:
            raise Refusal(ep.CODE_COMPANY_MISSING, "deliveryCompanyCode is required")
        if not tracking:
            raise Refusal(ep.CODE_TRACKING_MISSING, "trackingNumber is required")
        try:
            carrier = from_channel_code(str(company), "naverpay")
        except UnknownCarrierCodeError:
            if company not in OTHER_CARRIER_CODES:
                raise Refusal(ep.CODE_COMPANY_INVALID, f"unknown company {company}") from None
            text = str(tracking).replace("-", "")
            if not text.isalnum() or not 8 <= len(text) <= 30:
                raise Refusal(ep.CODE_TRACKING_INVALID, "invalid tracking number") from None
            return text
        try:
            return validate_invoice(carrier, str(tracking), InvoiceKind.PARCEL)
        except InvalidInvoiceError as exc:
            raise Refusal(
                ep.CODE_TRACKING_INVALID, f"invalid tracking number ({exc.check})"
            ) from None

    def delay(self, po_id: str, due: datetime, reason: str, detail: str) -> None:
        po = self.world.po(po_id)
        if po.status != "PAYED" or po.open_claim():
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot delay a {po.status} product order")
        due_ms = to_ms(due)
        if not self.world.now() < due_ms <= self.world.now() + MAX_DELAY_DAYS * DAY_MS:
            raise Refusal(ep.CODE_DUE_DATE_RANGE, "dispatchDueDate out of range")
        po.shipping_due, po.delay_reason, po.delay_detail = due_ms, reason, detail
        self.world.ledger.record("delay", po_id, reason=reason, due=ms_text(due_ms))

    def seller_cancel(self, po_id: str, reason: str, detail: str) -> None:
        po = self.world.po(po_id)
        if po.status != "PAYED" or po.open_claim():
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot cancel a {po.status} product order")
        now = self.world.now()
        claim = self.world.new_claim(po, "CANCEL", "CANCELING", reason, "SELLER", now)
        claim.detail = detail
        self.world.finish(po, "CANCEL_DONE", now)
        po.status = "CANCELED"
        self.world.bump(po_id, "CLAIM_COMPLETED", now, self.world.event_lag(None))
        self.world.ledger.record("seller_cancel", po_id, reason=reason)

    def approve_cancel(self, po_id: str) -> None:
        po = self.world.po(po_id)
        claim = po.claim
        if claim is not None and claim.claim_type == "CANCEL" and claim.status == "CANCEL_DONE":
            raise Refusal(ep.CODE_SAME_STATE, "cancel already done")
        if (
            claim is None
            or claim.claim_type != "CANCEL"
            or claim.status not in ("CANCEL_REQUEST", "CANCELING")
        ):
            raise Refusal(ep.CODE_WRONG_STATE, "no cancel request to approve")
        now = self.world.now()
        self.world.finish(po, "CANCEL_DONE", now)
        po.status = "CANCELED"
        self.world.bump(po_id, "CLAIM_COMPLETED", now, self.world.event_lag(None))
        self.world.ledger.record("cancel_approve", po_id)

    def seller_return_request(self, po_id: str, reason: str, detail: str) -> None:
        self.world.claim_after_dispatch(po_id, "RETURN", reason, "SELLER", None, None, Refusal)
        claim = self.world.pos[po_id].claim
        assert claim is not None
        claim.detail = detail
        self.world.ledger.record("return_request", po_id, reason=reason)

    def _open(
        self, po_id: str, claim_type: str, statuses: tuple[str, ...]
    ) -> tuple[SimProductOrder, SimClaim]:
        po = self.world.po(po_id)
        claim = po.open_claim()
        if claim is None or claim.claim_type != claim_type or claim.status not in statuses:
            raise Refusal(
                ep.CODE_WRONG_STATE, f"no open {claim_type.lower()} in a state allowing this"
            )
        return po, claim

    def return_approve(self, po_id: str) -> None:
        po, claim = self._open(po_id, "RETURN", ("RETURN_REQUEST", "COLLECTING", "COLLECT_DONE"))
        now = self.world.now()
        fee = claim.fee if claim.holdback == "HOLDBACK" else 0
        self.world.finish(po, "RETURN_DONE", now)
        po.status = "RETURNED"
        self.world.bump(po_id, "CLAIM_COMPLETED", now, self.world.event_lag(None))
        self.world.ledger.record("return_approve", po_id, refund=po.amount - fee, fee=fee)

    def claim_reject(self, po_id: str, claim_type: str, reason: str) -> None:
        po, claim = self._open(
            po_id, claim_type, (f"{claim_type}_REQUEST", "COLLECTING", "COLLECT_DONE")
        )
        if claim.holdback == "HOLDBACK":
            raise Refusal(ep.CODE_WRONG_STATE, f"{claim_type.lower()} is on hold")
        now = self.world.now()
        claim.detail = reason
        self.world.finish(po, f"{claim_type}_REJECT", now)
        po.status = claim.pre_status
        self.world.bump(po_id, "CLAIM_REJECTED", now, self.world.event_lag(None))
        self.world.ledger.record(f"{claim_type.lower()}_reject", po_id, reason=reason)

    def holdback(self, po_id: str, claim_type: str, hold_class: str, detail: str, fee: int) -> None:
        _po, claim = self._open(
            po_id, claim_type, (f"{claim_type}_REQUEST", "COLLECTING", "COLLECT_DONE")
        )
        if claim.holdback == "HOLDBACK":
            raise Refusal(ep.CODE_SAME_STATE, "already on hold")
        claim.holdback, claim.holdback_class, claim.holdback_detail = "HOLDBACK", hold_class, detail
        claim.holdback_at, claim.fee = self.world.now(), fee
        self.world.ledger.record(
            f"{claim_type.lower()}_holdback", po_id, fee=fee, hold_class=hold_class
        )

    def holdback_release(self, po_id: str, claim_type: str) -> None:
        _po, claim = self._open(
            po_id, claim_type, (f"{claim_type}_REQUEST", "COLLECTING", "COLLECT_DONE")
        )
        if claim.holdback != "HOLDBACK":
            raise Refusal(ep.CODE_SAME_STATE, "not on hold")
        claim.holdback, claim.released_at, claim.fee = (
            "RELEASED",
            self.world.now(),
            0,
        )  # R14: fee reset
        self.world.ledger.record(f"{claim_type.lower()}_holdback_release", po_id)

    def exchange_collect_approve(self, po_id: str) -> None:
        _po, claim = self._open(po_id, "EXCHANGE", ("EXCHANGE_REQUEST", "COLLECTING"))
        now = self.world.now()
        claim.status, claim.collected_at = "COLLECT_DONE", now
        self.world.bump(po_id, "COLLECT_DONE", now, self.world.event_lag(None))
        self.world.ledger.record("exchange_collect_approve", po_id)

    def exchange_dispatch(self, po_id: str, body: dict[str, Any]) -> None:
        po = self.world.po(po_id)
        claim = po.open_claim()
        if (
            claim is None
            or claim.claim_type != "EXCHANGE"
            or claim.status != "COLLECT_DONE"
            or claim.holdback == "HOLDBACK"
        ):
            raise Refusal(ep.CODE_EXCHANGE_STATE, "exchange state does not allow re-shipment")
        method = body.get("reDeliveryMethod") or "DELIVERY"
        number = body.get("reDeliveryTrackingNumber")
        if method in ep.TRACKED_METHODS:
            number = self._check_invoice(body.get("reDeliveryCompany"), number)
        now = self.world.now()
        claim.status = "EXCHANGE_REDELIVERING"
        claim.redelivery = {
            "reDeliveryMethod": method,
            "reDeliveryCompany": body.get("reDeliveryCompany"),
            "reDeliveryTrackingNumber": number,
            "reDeliveryOperationDate": now,
        }
        self.world.bump(po_id, "CLAIM_REDELIVERING", now, self.world.event_lag(None))
        self.world.ledger.record("exchange_redeliver", po_id, tracking=number)
