"""The Qoo10 sandbox's marketplace state: orders, claims and the rules the marketplace enforces.

Pure state (no HTTP): :class:`Qoo10World` answers the QAPI operations with a result code and
applies the buyer / J-QSM actions tests inject. Every side effect is recorded in the ledger
passed in. What the real Qoo10 does where the spec is silent is marked *(sim)*.

Order state machine per order number (qoo10.md §9): 1 (waiting) → 2 (paid, new) → 3 (estimated
ship date entered; SetSellerCheckYN_V2) → 4 (dispatched; SetSendingInfo) → 5 (delivered). The
claim axis is separate (§6.2); a buyer cancel follows R25 (:func:`rules.buyer_cancel_outcome`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from connectors.qoo10 import codes
from connectors.qoo10.codes import ClaimCode, ShippingStatus
from connectors.qoo10.dates import JST, parse_search_datetime, today_jst
from connectors.qoo10.rules import BuyerCancelOutcome, buyer_cancel_outcome
from connectors.qoo10.sandbox_model import (
    ActionError,
    Answer,
    ClaimRecord,
    SandboxOrder,
    SearchError,
)
from connectors.sandbox import Ledger

#: Longest EstShipDt offset accepted (-10017). Unknown on the real QAPI; passoffer assumes 30.
MAX_EST_SHIP_DAYS = 30
#: EstShipDt used when SetSellerCheckYN_V2 gets none *(sim)*.
DEFAULT_EST_SHIP_DAYS = 2
MAX_SEARCH_DAYS = 90

OK: Answer = (codes.OK, "SUCCESS")


class Qoo10World:
    """All orders of one seller. ``clock`` returns the current aware time."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] | None = None,
        lag: timedelta = timedelta(0),
        first_order_no: int = 700000001,
    ) -> None:
        self.ledger = ledger
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lag = lag
        self.orders: dict[str, SandboxOrder] = {}
        # Claims by current code (id(claim) -> (order, claim)), so a GetClaimInfo_V3 search for
        # one claim status costs O(claims in that status), not O(orders). Every claim is added
        # with _add_claim and changes code with _recode; nothing else writes ClaimRecord.code.
        self._claims: dict[ClaimCode, dict[int, tuple[SandboxOrder, ClaimRecord]]] = {
            code: {} for code in ClaimCode
        }
        self._numbers = itertools.count(first_order_no)
        self._packs = itertools.count(first_order_no * 10)

    def reset(self) -> None:
        self.orders.clear()
        for bucket in self._claims.values():
            bucket.clear()

    def now(self) -> datetime:
        return self.clock().astimezone(JST).replace(microsecond=0)

    def get(self, order_no: str) -> SandboxOrder:
        order = self.orders.get(str(order_no))
        if order is None:
            raise ActionError(f"unknown order {order_no}")
        return order

    # --- buyer and QSM actions (injected by tests) ---------------------------------------------

    def new_order(
        self,
        *,
        qty: int = 1,
        price: Decimal | int | str = 1200,
        sku: str = "SKU-1",
        title: str = "Sandbox item",
        pack_no: str | None = None,
        paid_at: datetime | None = None,
        paid: bool = True,
        buyer: str = "山田 太郎",
        payment_method: str = "Credit Card",
    ) -> SandboxOrder:
        """A new order line (state 2 when paid, 1 otherwise). Same ``pack_no`` = same cart."""
        at = paid_at.astimezone(JST).replace(microsecond=0) if paid_at else self.now()
        order_no = str(next(self._numbers))
        order = SandboxOrder(
            order_no=order_no,
            pack_no=pack_no or str(next(self._packs)),
            item_code=str(900000 + len(self.orders)),
            sku=sku,
            title=title,
            qty=qty,
            price=Decimal(str(price)),
            buyer=buyer,
            receiver=buyer,
            phone="090-0000-0000",
            zip_code="150-0001",
            address1="東京都渋谷区神宮前1-1-1",
            address2="101",
            payment_method=payment_method,
            ordered_at=at,
            paid_at=at if paid else None,
            status=ShippingStatus.REQUESTED if paid else ShippingStatus.WAITING,
        )
        self.orders[order_no] = order
        self.ledger.record("buyer_order", order_no, pack_no=order.pack_no, qty=qty)
        return order

    def buyer_cancel(
        self, order_no: str, reason: str = "changed mind", at: datetime | None = None
    ) -> BuyerCancelOutcome:
        """R25: immediate refund before the estimated ship date, a request after it; refused
        after dispatch (raises ActionError: the buyer must ask for a return)."""
        order = self.get(order_no)
        if order.closed or order.open_cancel_request:
            raise ActionError(f"order {order_no} is already cancelled or has an open request")
        outcome = buyer_cancel_outcome(order.status)
        when = self._at(at)
        if outcome == BuyerCancelOutcome.REFUSED:
            raise ActionError(f"order {order_no} is dispatched: request a return instead")
        if outcome == BuyerCancelOutcome.CANCELED:
            self._add_claim(order, ClaimRecord(ClaimCode.CANCELED, reason, when, when, "buyer"))
        else:
            self._add_claim(order, ClaimRecord(ClaimCode.CANCEL_REQUESTED, reason, when))
        self.ledger.record("buyer_cancel", order_no, outcome=outcome.value)
        return outcome

    def withdraw_cancel(self, order_no: str, at: datetime | None = None) -> None:
        """The buyer withdraws an open cancel request (claim code 0, *(sim)*)."""
        self._close_request(order_no, "buyer", at)
        self.ledger.record("buyer_withdraw", order_no)

    def qsm_reject_cancel(self, order_no: str, at: datetime | None = None) -> None:
        """The seller declines the request on the J-QSM screen (no QAPI method, §5.9)."""
        self._close_request(order_no, "qsm", at)
        self.ledger.record("qsm_reject_cancel", order_no)

    def qsm_approve_cancel(self, order_no: str, at: datetime | None = None) -> None:
        """The seller approves the request on the J-QSM screen."""
        self._approve(order_no, "qsm", at)
        self.ledger.record("qsm_approve_cancel", order_no)

    def return_request(
        self, order_no: str, reason: str = "damaged", at: datetime | None = None
    ) -> None:
        order = self.get(order_no)
        if order.status not in codes.DISPATCHED_STATUSES or order.closed:
            raise ActionError(f"order {order_no} is not dispatched: cancel instead of return")
        when = self._at(at)
        self._add_claim(order, ClaimRecord(ClaimCode.RETURN_REQUESTED, reason, when))
        self.ledger.record("buyer_return", order_no)

    def complete_return(self, order_no: str, at: datetime | None = None) -> None:
        order = self.get(order_no)
        claim = order.claim
        if claim is None or claim.code not in (ClaimCode.RETURN_REQUESTED, ClaimCode.RETURNING):
            raise ActionError(f"order {order_no} has no open return")
        self._recode(order, claim, ClaimCode.RETURNED)
        claim.completed_at, claim.closed_by = self._at(at), "qsm"
        self.ledger.record("qsm_complete_return", order_no)

    def deliver(self, order_no: str, at: datetime | None = None) -> None:
        order = self.get(order_no)
        if order.status != ShippingStatus.SHIPPING or order.closed:
            raise ActionError(f"order {order_no} is not in delivery")
        order.status, order.delivered_at = ShippingStatus.DELIVERED, self._at(at)
        self.ledger.record("delivered", order_no)

    def decide_purchase(self, order_no: str, at: datetime | None = None) -> None:
        order = self.get(order_no)
        if order.status != ShippingStatus.DELIVERED or order.decided_at is not None:
            raise ActionError(f"order {order_no} is not delivered or already decided")
        order.decided_at = self._at(at)
        self.ledger.record("purchase_decided", order_no)

    def _at(self, at: datetime | None) -> datetime:
        return at.astimezone(JST).replace(microsecond=0) if at else self.now()

    def _add_claim(self, order: SandboxOrder, claim: ClaimRecord) -> None:
        order.claims.append(claim)
        self._claims[claim.code][id(claim)] = (order, claim)

    def _recode(self, order: SandboxOrder, claim: ClaimRecord, code: ClaimCode) -> None:
        del self._claims[claim.code][id(claim)]
        claim.code = code
        self._claims[code][id(claim)] = (order, claim)

    def _close_request(self, order_no: str, by: str, at: datetime | None) -> None:
        order = self.get(order_no)
        claim = order.claim
        if claim is None or claim.code != ClaimCode.CANCEL_REQUESTED:
            raise ActionError(f"order {order_no} has no open cancel request")
        self._recode(order, claim, ClaimCode.WITHDRAWN)
        claim.completed_at, claim.closed_by = self._at(at), by

    def _approve(self, order_no: str, by: str, at: datetime | None) -> None:
        order = self.get(order_no)
        claim = order.claim
        if claim is None or claim.code != ClaimCode.CANCEL_REQUESTED:
            raise ActionError(f"order {order_no} has no open cancel request")
        self._recode(order, claim, ClaimCode.CANCELED)
        claim.completed_at, claim.closed_by = self._at(at), by

    # --- QAPI operations -----------------------------------------------------------------------

    def confirm(self, order_no: str, est_ship_dt: str, delay_type: str, memo: str) -> Answer:
        """SetSellerCheckYN_V2: state 2 → 3 with the estimated ship date; in 3 it updates the date."""
        order = self.orders.get(order_no)
        if order is None:
            return codes.SELLER_OR_ORDER_INVALID, "Not exists seller info"
        if order.closed:
            return codes.ORDER_STATUS_INVALID, "order is cancelled"
        if order.status not in (ShippingStatus.REQUESTED, ShippingStatus.PREPARED):
            return codes.NOT_SHIPPING_REQUEST, "order is not in the shipping-request state"
        today = today_jst(self.now())
        if est_ship_dt:
            try:
                day = datetime.strptime(est_ship_dt, "%Y%m%d").date()
            except ValueError:
                return codes.EST_SHIP_DATE_MISSING, "EstShipDt must be yyyyMMdd"
        else:
            day = today + timedelta(days=DEFAULT_EST_SHIP_DAYS)
        if day <= today:
            return codes.EST_SHIP_DATE_NOT_FUTURE, "EstShipDt must be after today (JST)"
        if day > today + timedelta(days=MAX_EST_SHIP_DAYS):
            return codes.EST_SHIP_DATE_TOO_LATE, "EstShipDt is too far"
        first = order.status == ShippingStatus.REQUESTED
        changed = order.est_ship_date != day
        order.status, order.est_ship_date = ShippingStatus.PREPARED, day
        if first:
            self.ledger.record("confirm", order_no, est_ship_date=day.isoformat(), delay=delay_type)
        elif changed:
            self.ledger.record("est_ship_date_changed", order_no, est_ship_date=day.isoformat())
        return OK

    def send(self, order_no: str, corp: str, tracking: str) -> Answer:
        """SetSendingInfo: state 2/3 → 4. Refused (-10004, *(sim)*) while a buyer cancel request
        is open (R25), for a cancelled order, before payment and after delivery. The same
        invoice again is a success without a new effect; another invoice replaces it."""
        order = self.orders.get(order_no)
        if order is None:
            return codes.SELLER_OR_ORDER_INVALID, "Not exists seller info"
        if not corp or not tracking or len(tracking) > 50 or len(corp) > 200:
            return codes.SELLER_OR_ORDER_INVALID, "ShippingCorp and TrackingNo are required"
        if order.open_cancel_request:
            return codes.ORDER_STATUS_INVALID, "open cancel request: approve or decline it first"
        if order.closed or order.status in (ShippingStatus.WAITING, ShippingStatus.DELIVERED):
            return codes.ORDER_STATUS_INVALID, "order status does not allow dispatch"
        if order.status == ShippingStatus.SHIPPING:
            if (order.carrier, order.tracking_no) != (corp, tracking):
                order.carrier, order.tracking_no = corp, tracking
                self.ledger.record("tracking_changed", order_no, corp=corp, tracking=tracking)
            return OK
        order.status, order.shipped_at = ShippingStatus.SHIPPING, self.now()
        order.carrier, order.tracking_no = corp, tracking
        self.ledger.record("dispatch", order_no, corp=corp, tracking=tracking)
        return OK

    def cancel(self, contr_no: str, reason_code: str, memo: str) -> Answer:
        """Claim.SetCancelProcess.

        Before dispatch: seller-fault reasons (blank, 2, 3) cancel at once (an open request is
        cancelled with them); reason 1 (order change, buyer side) only with an open buyer request
        and then approves it (R23; approval path *(sim)*). After dispatch: reason 3 (delivery
        delay) refunds the order as a return *(sim, R24)*; any other reason -10004.
        """
        if not contr_no.isdigit():
            return codes.SELLER_OR_ORDER_INVALID, "order number is invalid"
        order = self.orders.get(contr_no)
        if order is None:
            return codes.ORDER_NOT_FOUND_OR_DATE_ERROR, "order not found"
        if reason_code not in ("", "1", "2", "3"):
            return codes.SELLER_OR_ORDER_INVALID, "CancelReason is invalid"
        if order.closed or order.status == ShippingStatus.WAITING:
            return codes.ORDER_STATUS_INVALID, "order status is not valid"
        now = self.now()
        if order.status in codes.DISPATCHED_STATUSES:
            if reason_code != codes.CANCEL_REASON_CODES["DELAYED_DELIVERY"]:
                return codes.ORDER_STATUS_INVALID, "dispatched: only a delivery-delay refund"
            self._add_claim(
                order, ClaimRecord(ClaimCode.RETURNED, "delivery delay", now, now, "seller")
            )
            self.ledger.record("refund_after_dispatch", contr_no, memo=memo)
            return OK
        if reason_code == codes.BUYER_REQUEST_CANCEL_REASON:
            if not order.open_cancel_request:
                return codes.ORDER_STATUS_INVALID, "buyer-fault reason needs a buyer request"
            self._approve(contr_no, "seller", now)
            self.ledger.record("cancel_approved", contr_no, memo=memo)
            return OK
        if order.open_cancel_request:
            self._approve(contr_no, "seller", now)
        else:
            self._add_claim(
                order, ClaimRecord(ClaimCode.CANCELED, f"seller:{reason_code}", now, now, "seller")
            )
        self.ledger.record("seller_cancel", contr_no, reason=reason_code, memo=memo)
        return OK

    def message(self, order_no: str, title: str, text: str) -> Answer:
        """The sandbox's buyer message method (see codes.SEND_BUYER_MESSAGE)."""
        if order_no not in self.orders:
            return codes.SELLER_OR_ORDER_INVALID, "Argument error"
        if not text.strip():
            return codes.SELLER_OR_ORDER_INVALID, "Argument error: empty message"
        self.ledger.record("message", order_no, title=title, text=text)
        return OK

    # --- lookups -------------------------------------------------------------------------------

    def window(self, start: str, end: str) -> tuple[datetime, datetime]:
        """Parsed search bounds. Raises SearchError (-10002 bad date, -10003 over 90 days)."""
        try:
            lo = parse_search_datetime(start)
            hi = parse_search_datetime(end, end=True)
        except ValueError:
            raise SearchError(codes.ORDER_NOT_FOUND_OR_DATE_ERROR, "Search Date Error") from None
        if hi < lo:
            raise SearchError(codes.ORDER_NOT_FOUND_OR_DATE_ERROR, "Search Date Error")
        if hi - lo > timedelta(days=MAX_SEARCH_DAYS):
            raise SearchError(
                codes.PERIOD_TOO_LONG_OR_SELLER_INVALID, "Searching period exceeds to 90 days."
            )
        return lo, hi

    def visible(self, moment: datetime | None, lo: datetime, hi: datetime) -> bool:
        """In the window and past the visibility lag (the list lags behind the order)."""
        return moment is not None and lo <= moment <= hi and moment <= self.now() - self.lag

    def shipping_list(
        self, status: str, condition: str, lo: datetime, hi: datetime
    ) -> list[SandboxOrder]:
        wanted = (
            {ShippingStatus.WAITING, ShippingStatus.REQUESTED, ShippingStatus.PREPARED}
            if status in ("", "0")
            else {ShippingStatus(status)}
            if status in {s.value for s in ShippingStatus}
            else set()
        )
        out = []
        for order in self.orders.values():
            if order.status not in wanted:
                continue
            if condition == codes.SEARCH_BY_PAYMENT_DATE:
                moments = [order.paid_at]
            elif condition == codes.SEARCH_BY_SHIP_DATE:
                moments = [order.shipped_at]
            elif condition == codes.SEARCH_BY_DELIVERED_DATE:
                moments = [order.delivered_at, order.decided_at]  # decision date: (sim)
            else:
                moments = [order.ordered_at]
            if any(self.visible(m, lo, hi) for m in moments):
                out.append(order)
        return out

    def claim_list(
        self, claim_stat: str, condition: str, lo: datetime, hi: datetime
    ) -> list[tuple[SandboxOrder, ClaimRecord]]:
        """GetClaimInfo_V3: claims whose *current* status is ``claim_stat`` (blank = all) and
        whose date for ``condition`` lies in [lo, hi] and past the lag. Reads only the claims in
        that status (index); with a blank status, sorted by request date."""
        if claim_stat:
            try:
                buckets = [self._claims[ClaimCode(claim_stat)]]
            except ValueError:
                return []
        else:
            buckets = list(self._claims.values())
        found: list[tuple[SandboxOrder, ClaimRecord]] = []
        for bucket in buckets:
            for order, claim in bucket.values():
                if condition == codes.CLAIM_SEARCH_BY_COMPLETION_DATE:
                    moment = claim.completed_at
                elif condition == codes.CLAIM_SEARCH_BY_ORDER_DATE:
                    moment = order.ordered_at
                else:
                    moment = claim.requested_at
                if self.visible(moment, lo, hi):
                    found.append((order, claim))
        if len(buckets) > 1:
            found.sort(key=lambda oc: (oc[1].requested_at, oc[0].order_no))
        return found
