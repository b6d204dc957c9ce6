"""The Naver Pay world behind the sandbox: product orders, claims and the change feed (no HTTP).

Modelled on spec §8. Promises:

* **feed** — each product order has one visible record, its latest change (§3.5). A change is
  recorded at its change time and becomes visible only ``lag`` seconds later; until then the
  previous record is what the feed shows, and an older change that becomes visible after a newer
  one never shows. The record's status is a snapshot of the change time, so it goes stale when a
  non-feed event happens (delivery, seller confirm, holds).
* **paging** — ascending by (``lastChangedDate``, ``productOrderId``), resumed from
  ``moreFrom``/``moreSequence`` without duplicates (§3.4).
* **writes** — a refused item raises :class:`Refusal` with Naver's per-item code; the HTTP layer
  turns it into ``failProductOrderInfos``. Every side effect is recorded in the ledger, including
  ``cancel_refused_by_dispatch`` when a dispatch refuses an open buyer cancel request (R29).
* **buyer / system events** (injections) raise :class:`SimError` when the state does not allow
  them (the control API answers 409).

Times are integer epoch milliseconds from the sandbox clock. Assumptions where the spec is
UNCONFIRMED: seller cancel completes at once (``CANCEL_DONE``); confirm, delay and holds do not
touch the feed; re-dispatch answers 104442; return approve is allowed from any open return phase
and while held (the fee is deducted from the refund, R14); a withdrawn buyer cancel ends as
``CANCEL_REJECT``; dispatch needs no prior confirm unless ``require_confirm``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.naverpay import endpoints as ep
from connectors.naverpay.dates import KST, format_dt, from_epoch, parse_dt
from connectors.naverpay.mapping import FINISHED_CLAIM_STATUSES
from connectors.sandbox import Ledger
from store.carriers import UnknownCarrierCodeError, from_channel_code
from store.domain import InvoiceKind
from store.errors import InvalidInvoiceError
from store.invoices import validate_invoice

DAY_MS = 86_400_000
#: Naver codes outside store.carriers' crosswalk that the sandbox still accepts (spec §5.8).
OTHER_CARRIER_CODES = frozenset(
    {
        "REGISTPOST",
        "GENERALPOST",
        "CVSNET",
        "CUPARCEL",
        "KOREXG",
        "HLCGLOBAL",
        "DHL",
        "FEDEX",
        "UPS",
        "TNT",
        "USPS",
        "PANTOS",
        "NONGHYUP",
        "SEBANG",
        "CHUNIL",
        "HDEXP",
        "KUNYOUNG",
        "TEAMFRESH",
        "VROONG",
        "TODAYPICKUP",
    }
)
MAX_DELAY_DAYS = 90  # assumption: how far a dispatch may be delayed


class SimError(ValueError):
    """A buyer/system event the current state does not allow."""


class Refusal(Exception):
    """A per-item refusal of a seller write (Naver code + message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class SimClaim:
    claim_id: str
    claim_type: str  # CANCEL | RETURN | EXCHANGE
    status: str
    requested_at: int
    reason: str
    detail: str = ""
    channel: str = "BUYER"
    pre_status: str = "PAYED"
    quantity: int = 1
    holdback: str | None = None  # HOLDBACK | RELEASED
    holdback_class: str | None = None
    holdback_detail: str = ""
    holdback_at: int | None = None
    released_at: int | None = None
    fee: int = 0
    collected_at: int | None = None
    completed_at: int | None = None
    redelivery: dict[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.status not in FINISHED_CLAIM_STATUSES


@dataclass
class SimProductOrder:
    product_order_id: str
    order_id: str
    name: str
    option: str
    sku: str
    quantity: int
    unit_price: int
    amount: int
    address: dict[str, Any]
    status: str = "PAYED"
    place_status: str = "NOT_YET"
    placed_at: int | None = None
    address_changed: bool = False
    shipping_due: int = 0
    delay_reason: str | None = None
    delay_detail: str | None = None
    delivery: dict[str, Any] | None = None
    decided_at: int | None = None
    claim: SimClaim | None = None
    completed: list[SimClaim] = field(default_factory=list)

    def open_claim(self) -> SimClaim | None:
        return self.claim if self.claim is not None and self.claim.open else None


@dataclass
class SimOrder:
    order_id: str
    ordered_at: int
    paid_at: int | None
    payment_means: str
    orderer_name: str
    orderer_tel: str
    mileage: int
    product_order_ids: list[str]


@dataclass(frozen=True)
class FeedRecord:
    order_id: str
    product_order_id: str
    type: str
    changed_at: int
    visible_at: int
    status: str
    claim_type: str | None
    claim_status: str | None
    address_changed: bool

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "orderId": self.order_id,
            "productOrderId": self.product_order_id,
            "lastChangedType": self.type,
            "lastChangedDate": ms_text(self.changed_at),
            "productOrderStatus": self.status,
            "receiverAddressChanged": self.address_changed,
        }
        if self.claim_type:  # keys absent when there is no claim (spec §3.2)
            item["claimType"] = self.claim_type
            item["claimStatus"] = self.claim_status
        return item


def ms_text(ms: int | None) -> str | None:
    return None if ms is None else format_dt(from_epoch(ms / 1000))


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def naver_shipping_address(address: dict[str, Any]) -> dict[str, Any]:
    """Our Address fields (name, phone, zip_code, line1, line2) → Naver ``shippingAddress``."""
    return {
        "addressType": "DOMESTIC",
        "name": address.get("name", "Buyer"),
        "tel1": address.get("phone", "010-0000-0000"),
        "tel2": "",
        "zipCode": address.get("zip_code", "00000"),
        "baseAddress": address.get("line1", "Seoul"),
        "detailedAddress": address.get("line2", ""),
        "city": "",
        "state": "",
        "country": "KOR",
        "isRoadNameAddress": True,
    }


class NaverWorld:
    """All state of one sandbox. Not thread-safe; used from the event loop only."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        lag: Callable[[], float],
        ledger: Ledger,
        require_confirm: bool = False,
    ) -> None:
        self.clock = clock
        self.lag = lag
        self.ledger = ledger
        self.require_confirm = require_confirm
        self.orders: dict[str, SimOrder] = {}
        self.pos: dict[str, SimProductOrder] = {}
        self.records: dict[str, list[FeedRecord]] = {}
        self._seq = 0

    # --- time, ids, feed ---------------------------------------------------------------------
    def now(self) -> int:
        return int(self.clock() * 1000)

    def _when(self, at: datetime | None) -> int:
        return to_ms(at) if at is not None else self.now()

    def _next_id(self) -> str:
        self._seq += 1
        day = from_epoch(self.now() / 1000).astimezone(KST)
        return f"{day:%Y%m%d}{self._seq:08d}"

    def event_lag(self, lag: float | None) -> int:
        return int(1000 * (self.lag() if lag is None else lag))

    def bump(self, po_id: str, change_type: str, at: int, lag_ms: int) -> None:
        """Overwrite the product order's feed record (visible after ``lag_ms``)."""
        po = self.pos[po_id]
        claim = po.claim
        record = FeedRecord(
            po.order_id,
            po_id,
            change_type,
            at,
            at + max(0, lag_ms),
            po.status,
            claim.claim_type if claim else None,
            claim.status if claim else None,
            po.address_changed,
        )
        kept = [r for r in self.records.get(po_id, []) if r.visible_at > self.now()]
        visible = self.visible_record(po_id)
        self.records[po_id] = ([visible] if visible else []) + kept + [record]

    def touch(self, po_id: str, change_type: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        """Write a feed record of any type (tests: unknown types)."""
        self._po(po_id, SimError)
        self.bump(po_id, change_type, self._when(at), self.event_lag(lag))

    def visible_record(self, po_id: str) -> FeedRecord | None:
        now = self.now()
        visible = [r for r in self.records.get(po_id, []) if r.visible_at <= now]
        return max(visible, key=lambda r: r.changed_at) if visible else None

    def feed_page(
        self,
        start: int,
        end: int,
        *,
        change_type: str | None,
        more_from: int | None,
        more_sequence: str | None,
        limit: int,
    ) -> tuple[list[FeedRecord], tuple[int, str] | None]:
        """One page of the feed and the (moreFrom, moreSequence) of the first item left out."""
        rows = []
        for po_id in self.records:
            record = self.visible_record(po_id)
            if record is None or not start <= record.changed_at <= end:
                continue
            if change_type and record.type != change_type:
                continue
            if more_from is not None and (record.changed_at, po_id) < (
                more_from,
                more_sequence or "",
            ):
                continue
            rows.append(record)
        rows.sort(key=lambda r: (r.changed_at, r.product_order_id))
        page, rest = rows[:limit], rows[limit:]
        more = (rest[0].changed_at, rest[0].product_order_id) if rest else None
        return page, more

    # --- lookups --------------------------------------------------------------------------------
    def _po(self, po_id: str, error: type[Exception] = Refusal) -> SimProductOrder:
        po = self.pos.get(po_id)
        if po is None:
            if error is Refusal:
                raise Refusal(ep.CODE_NOT_FOUND, "product order not found")
            raise SimError(f"unknown product order {po_id}")
        return po

    def detail(self, po_id: str) -> dict[str, Any] | None:
        from connectors.naverpay.simulator_render import render_detail

        po = self.pos.get(po_id)
        return None if po is None else render_detail(self.orders[po.order_id], po)

    # --- buyer and system events ---------------------------------------------------------------
    def new_order(
        self,
        lines: list[dict[str, Any]],
        *,
        address: dict[str, Any] | None = None,
        mileage_used: int = 0,
        payment_means: str = "신용카드",
        orderer_name: str = "Buyer",
        paid: bool = True,
        at: datetime | None = None,
        lag: float | None = None,
    ) -> dict[str, Any]:
        if not lines:
            raise SimError("an order needs at least one line")
        when, lag_ms = self._when(at), self.event_lag(lag)
        order_id = self._next_id()
        shipping = naver_shipping_address(address or {"name": orderer_name})
        ids = []
        for line in lines:
            po_id = self._next_id()
            quantity = int(line.get("quantity", 1))
            unit_price = int(line.get("unit_price", 10_000))
            if quantity < 1 or unit_price < 0:
                raise SimError("quantity >= 1 and unit_price >= 0")
            self.pos[po_id] = SimProductOrder(
                product_order_id=po_id,
                order_id=order_id,
                name=str(line.get("name", "Item")),
                option=str(line.get("option", "")),
                sku=str(line.get("sku", f"SKU-{po_id[-4:]}")),
                quantity=quantity,
                unit_price=unit_price,
                amount=int(line.get("amount", quantity * unit_price)),
                address=dict(shipping),
                status="PAYED" if paid else "PAYMENT_WAITING",
                shipping_due=when + 3 * DAY_MS,
            )
            ids.append(po_id)
        self.orders[order_id] = SimOrder(
            order_id,
            when,
            when if paid else None,
            payment_means,
            orderer_name,
            shipping["tel1"],
            int(mileage_used),
            ids,
        )
        for po_id in ids:
            self.bump(po_id, "PAYED" if paid else "PAY_WAITING", when, lag_ms)
        return {"orderId": order_id, "productOrderIds": ids}

    def pay(self, order_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        order = self.orders.get(order_id)
        if order is None or order.paid_at is not None:
            raise SimError(f"order {order_id} is unknown or already paid")
        when, lag_ms = self._when(at), self.event_lag(lag)
        order.paid_at = when
        for po_id in order.product_order_ids:
            self.pos[po_id].status = "PAYED"
            self.bump(po_id, "PAYED", when, lag_ms)

    def change_address(
        self,
        order_id: str,
        address: dict[str, Any],
        *,
        at: datetime | None = None,
        lag: float | None = None,
    ) -> list[str]:
        order = self.orders.get(order_id)
        if order is None:
            raise SimError(f"unknown order {order_id}")
        targets = [p for p in order.product_order_ids if self.pos[p].status == "PAYED"]
        if not targets:
            raise SimError(f"order {order_id} has nothing left to ship")
        when, lag_ms = self._when(at), self.event_lag(lag)
        for po_id in targets:
            po = self.pos[po_id]
            po.address = naver_shipping_address(address)
            po.address_changed = True
            self.bump(po_id, "DELIVERY_ADDRESS_CHANGED", when, lag_ms)
        return targets

    def _new_claim(self, po: SimProductOrder, claim_type: str, status: str, reason: str, channel: str, at: int) -> SimClaim:
        claim = SimClaim(
            claim_id=self._next_id(),
            claim_type=claim_type,
            status=status,
            requested_at=at,
            reason=reason,
            channel=channel,
            pre_status=po.status,
            quantity=po.quantity,
        )
        po.claim = claim
        return claim

    def _finish(self, po: SimProductOrder, status: str, at: int) -> SimClaim:
        claim = po.claim
        assert claim is not None
        claim.status = status
        claim.completed_at = at
        po.completed.append(claim)
        return claim

    def buyer_cancel_request(self, po_id: str, reason: str = "INTENT_CHANGED", *, at: datetime | None = None, lag: float | None = None) -> str:
        po = self._po(po_id, SimError)
        if po.status != "PAYED" or po.open_claim():
            raise SimError(f"{po_id}: cancel can be requested only while PAYED without a claim")
        when = self._when(at)
        claim = self._new_claim(po, "CANCEL", "CANCEL_REQUEST", reason, "BUYER", when)
        self.bump(po_id, "CLAIM_REQUESTED", when, self.event_lag(lag))
        return claim.claim_id

    def withdraw_cancel(self, po_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        po = self._po(po_id, SimError)
        claim = po.open_claim()
        if claim is None or claim.status != "CANCEL_REQUEST":
            raise SimError(f"{po_id}: no open cancel request")
        when = self._when(at)
        self._finish(po, "CANCEL_REJECT", when)
        self.bump(po_id, "CLAIM_REJECTED", when, self.event_lag(lag))

    def _after_dispatch_claim(self, po_id: str, claim_type: str, reason: str, channel: str, at: datetime | None, lag: float | None, error: type[Exception]) -> str:
        po = self._po(po_id, error)
        if po.status not in ("DELIVERING", "DELIVERED") or po.open_claim():
            message = f"{claim_type.lower()} needs a dispatched product order without a claim"
            if error is Refusal:
                raise Refusal(ep.CODE_WRONG_STATE, message)
            raise SimError(f"{po_id}: {message}")
        when = self._when(at)
        claim = self._new_claim(po, claim_type, f"{claim_type}_REQUEST", reason, channel, when)
        self.bump(po_id, "CLAIM_REQUESTED", when, self.event_lag(lag))
        return claim.claim_id

    def return_request(self, po_id: str, reason: str = "INTENT_CHANGED", *, at: datetime | None = None, lag: float | None = None) -> str:
        return self._after_dispatch_claim(po_id, "RETURN", reason, "BUYER", at, lag, SimError)

    def exchange_request(self, po_id: str, reason: str = "COLOR_AND_SIZE", *, at: datetime | None = None, lag: float | None = None) -> str:
        return self._after_dispatch_claim(po_id, "EXCHANGE", reason, "BUYER", at, lag, SimError)

    def collect_done(self, po_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        po = self._po(po_id, SimError)
        claim = po.open_claim()
        if claim is None or claim.status not in ("RETURN_REQUEST", "EXCHANGE_REQUEST", "COLLECTING"):
            raise SimError(f"{po_id}: nothing to collect")
        when = self._when(at)
        claim.status, claim.collected_at = "COLLECT_DONE", when
        self.bump(po_id, "COLLECT_DONE", when, self.event_lag(lag))

    def purchase_decision(self, po_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        po = self._po(po_id, SimError)
        if po.status not in ("DELIVERING", "DELIVERED") or po.open_claim():
            raise SimError(f"{po_id}: purchase can be decided only after dispatch, without a claim")
        when = self._when(at)
        po.status, po.decided_at = "PURCHASE_DECIDED", when
        self.bump(po_id, "PURCHASE_DECIDED", when, self.event_lag(lag))

    def deliver(self, po_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        """The carrier delivered: not a feed event (the record goes stale), except the end of an
        exchange re-delivery (``CLAIM_COMPLETED``)."""
        po = self._po(po_id, SimError)
        when = self._when(at)
        claim = po.open_claim()
        if claim is not None and claim.status == "EXCHANGE_REDELIVERING":
            self._finish(po, "EXCHANGE_DONE", when)
            po.status = "EXCHANGED"
            self.bump(po_id, "CLAIM_COMPLETED", when, self.event_lag(lag))
            return
        if po.status != "DELIVERING" or po.delivery is None:
            raise SimError(f"{po_id}: not on its way")
        po.status = "DELIVERED"
        po.delivery["deliveredDate"] = when

    # --- seller writes ---------------------------------------------------------------------------
    def confirm(self, po_id: str) -> bool:
        po = self._po(po_id)
        if po.status != "PAYED" or po.open_claim():
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot confirm a {po.status} product order")
        if po.place_status == "OK":
            raise Refusal(ep.CODE_SAME_STATE, "already confirmed")
        po.place_status, po.placed_at = "OK", self.now()
        self.ledger.record("confirm", po_id)
        return po.address_changed

    def dispatch(self, item: dict[str, Any], *, source: str = "api") -> None:
        """One ``dispatchProductOrders`` element (top-level shape already checked)."""
        po_id = str(item.get("productOrderId", ""))
        po = self._po(po_id)
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
        if self.require_confirm and po.place_status != "OK":
            raise Refusal(ep.CODE_NOT_CONFIRMED, "confirm the product order first")
        sent = self.now()
        if item.get("dispatchDate"):
            try:
                sent = to_ms(parse_dt(str(item["dispatchDate"])))
            except ValueError:
                raise Refusal(ep.CODE_BAD_REQUEST, "dispatchDate is malformed") from None
        if claim is not None:  # R29: dispatching refuses the buyer's cancel request
            self._finish(po, "CANCEL_REJECT", self.now())
            self.ledger.record("cancel_refused_by_dispatch", po_id, claim_id=claim.claim_id)
        po.status = "DELIVERING"
        po.delivery = {
            "deliveryMethod": method,
            "deliveryCompany": company,
            "trackingNumber": number or None,
            "sendDate": sent,
            "deliveredDate": None,
        }
        self.bump(po_id, "DISPATCHED", self.now(), self.event_lag(None))
        op = "dispatch" if source == "api" else "seller_centre_dispatch"
        self.ledger.record(op, po_id, company=company, tracking=number, method=method)

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
            raise Refusal(ep.CODE_TRACKING_INVALID, f"invalid tracking number ({exc.check})") from None

    def delay(self, po_id: str, due: datetime, reason: str, detail: str) -> None:
        po = self._po(po_id)
        if po.status != "PAYED" or po.open_claim():
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot delay a {po.status} product order")
        due_ms = to_ms(due)
        if not self.now() < due_ms <= self.now() + MAX_DELAY_DAYS * DAY_MS:
            raise Refusal(ep.CODE_DUE_DATE_RANGE, "dispatchDueDate out of range")
        po.shipping_due, po.delay_reason, po.delay_detail = due_ms, reason, detail
        self.ledger.record("delay", po_id, reason=reason, due=ms_text(due_ms))

    def seller_cancel(self, po_id: str, reason: str, detail: str) -> None:
        po = self._po(po_id)
        if po.status != "PAYED" or po.open_claim():
            raise Refusal(ep.CODE_WRONG_STATE, f"cannot cancel a {po.status} product order")
        now = self.now()
        claim = self._new_claim(po, "CANCEL", "CANCELING", reason, "SELLER", now)
        claim.detail = detail
        self._finish(po, "CANCEL_DONE", now)
        po.status = "CANCELED"
        self.bump(po_id, "CLAIM_COMPLETED", now, self.event_lag(None))
        self.ledger.record("seller_cancel", po_id, reason=reason)

    def approve_cancel(self, po_id: str) -> None:
        po = self._po(po_id)
        claim = po.claim
        if claim is not None and claim.claim_type == "CANCEL" and claim.status == "CANCEL_DONE":
            raise Refusal(ep.CODE_SAME_STATE, "cancel already done")
        if claim is None or claim.claim_type != "CANCEL" or claim.status not in ("CANCEL_REQUEST", "CANCELING"):
            raise Refusal(ep.CODE_WRONG_STATE, "no cancel request to approve")
        now = self.now()
        self._finish(po, "CANCEL_DONE", now)
        po.status = "CANCELED"
        self.bump(po_id, "CLAIM_COMPLETED", now, self.event_lag(None))
        self.ledger.record("cancel_approve", po_id)

    def seller_return_request(self, po_id: str, reason: str, detail: str) -> None:
        self._after_dispatch_claim(po_id, "RETURN", reason, "SELLER", None, None, Refusal)
        assert self.pos[po_id].claim is not None
        self.pos[po_id].claim.detail = detail  # type: ignore[union-attr]
        self.ledger.record("return_request", po_id, reason=reason)

    def _open(self, po_id: str, claim_type: str, statuses: tuple[str, ...]) -> tuple[SimProductOrder, SimClaim]:
        po = self._po(po_id)
        claim = po.open_claim()
        if claim is None or claim.claim_type != claim_type or claim.status not in statuses:
            raise Refusal(ep.CODE_WRONG_STATE, f"no open {claim_type.lower()} in a state allowing this")
        return po, claim

    def return_approve(self, po_id: str) -> None:
        po, claim = self._open(po_id, "RETURN", ("RETURN_REQUEST", "COLLECTING", "COLLECT_DONE"))
        now = self.now()
        fee = claim.fee if claim.holdback == "HOLDBACK" else 0
        self._finish(po, "RETURN_DONE", now)
        po.status = "RETURNED"
        self.bump(po_id, "CLAIM_COMPLETED", now, self.event_lag(None))
        self.ledger.record("return_approve", po_id, refund=po.amount - fee, fee=fee)

    def claim_reject(self, po_id: str, claim_type: str, reason: str) -> None:
        po, claim = self._open(po_id, claim_type, (f"{claim_type}_REQUEST", "COLLECTING", "COLLECT_DONE"))
        if claim.holdback == "HOLDBACK":
            raise Refusal(ep.CODE_WRONG_STATE, f"{claim_type.lower()} is on hold")
        now = self.now()
        claim.detail = reason
        self._finish(po, f"{claim_type}_REJECT", now)
        po.status = claim.pre_status
        self.bump(po_id, "CLAIM_REJECTED", now, self.event_lag(None))
        self.ledger.record(f"{claim_type.lower()}_reject", po_id, reason=reason)

    def holdback(self, po_id: str, claim_type: str, hold_class: str, detail: str, fee: int) -> None:
        _po, claim = self._open(po_id, claim_type, (f"{claim_type}_REQUEST", "COLLECTING", "COLLECT_DONE"))
        if claim.holdback == "HOLDBACK":
            raise Refusal(ep.CODE_SAME_STATE, "already on hold")
        claim.holdback, claim.holdback_class, claim.holdback_detail = "HOLDBACK", hold_class, detail
        claim.holdback_at, claim.fee = self.now(), fee
        self.ledger.record(f"{claim_type.lower()}_holdback", po_id, fee=fee, hold_class=hold_class)

    def holdback_release(self, po_id: str, claim_type: str) -> None:
        _po, claim = self._open(po_id, claim_type, (f"{claim_type}_REQUEST", "COLLECTING", "COLLECT_DONE"))
        if claim.holdback != "HOLDBACK":
            raise Refusal(ep.CODE_SAME_STATE, "not on hold")
        claim.holdback, claim.released_at, claim.fee = "RELEASED", self.now(), 0  # R14: fee reset
        self.ledger.record(f"{claim_type.lower()}_holdback_release", po_id)

    def exchange_collect_approve(self, po_id: str) -> None:
        _po, claim = self._open(po_id, "EXCHANGE", ("EXCHANGE_REQUEST", "COLLECTING"))
        now = self.now()
        claim.status, claim.collected_at = "COLLECT_DONE", now
        self.bump(po_id, "COLLECT_DONE", now, self.event_lag(None))
        self.ledger.record("exchange_collect_approve", po_id)

    def exchange_dispatch(self, po_id: str, body: dict[str, Any]) -> None:
        po = self._po(po_id)
        claim = po.open_claim()
        if claim is None or claim.claim_type != "EXCHANGE" or claim.status != "COLLECT_DONE" or claim.holdback == "HOLDBACK":
            raise Refusal(ep.CODE_EXCHANGE_STATE, "exchange state does not allow re-shipment")
        method = body.get("reDeliveryMethod") or "DELIVERY"
        number = body.get("reDeliveryTrackingNumber")
        if method in ep.TRACKED_METHODS:
            number = self._check_invoice(body.get("reDeliveryCompany"), number)
        now = self.now()
        claim.status = "EXCHANGE_REDELIVERING"
        claim.redelivery = {
            "reDeliveryMethod": method,
            "reDeliveryCompany": body.get("reDeliveryCompany"),
            "reDeliveryTrackingNumber": number,
            "reDeliveryOperationDate": now,
        }
        self.bump(po_id, "CLAIM_REDELIVERING", now, self.event_lag(None))
        self.ledger.record("exchange_redeliver", po_id, tracking=number)
