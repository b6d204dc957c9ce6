"""The Naver Pay world behind the sandbox: product orders, claims and the change feed (no HTTP).

Modelled on spec §8. Promises:

* **feed** — each product order has one visible record, its latest change (§3.5). A change is
  recorded at its change time and becomes visible only ``lag`` seconds later; until then the
  previous record is what the feed shows, and an older change that becomes visible after a newer
  one never shows. The record's status is a snapshot of the change time, so it goes stale when a
  non-feed event happens (delivery, seller confirm, holds).
* **paging** — ascending by (``lastChangedDate``, ``productOrderId``), resumed from
  ``moreFrom``/``moreSequence`` without duplicates (§3.4).
* **condition query** (§4.5) — product orders whose ``rangeType`` time lies in an inclusive
  range, ascending by (that time, ``productOrderId``), in numbered pages. It reads the order
  store, not the feed: an order is found ``condition_lag`` seconds after its payment (default 0),
  with **all** its product orders at once (assumption: one payment is one transaction).
* **writes** (:class:`~connectors.naverpay.simulator_seller.SellerDesk`) — a refused item raises :class:`Refusal` with Naver's per-item code; the HTTP layer
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

import bisect
import math
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from connectors.naverpay import endpoints as ep
from connectors.naverpay.dates import KST, from_epoch
from connectors.naverpay.sim_state import (
    DAY_MS,
    FeedRecord,
    Refusal,
    SimClaim,
    SimError,
    SimOrder,
    SimProductOrder,
    naver_shipping_address,
    to_ms,
)
from connectors.naverpay.simulator_render import render_detail
from connectors.sandbox import Ledger


class NaverWorld:
    """All state of one sandbox. Not thread-safe; used from the event loop only."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        lag: Callable[[], float],
        ledger: Ledger,
        require_confirm: bool = False,
        condition_lag: float = 0.0,
    ) -> None:
        self.clock = clock
        self.lag = lag
        self.ledger = ledger
        self.require_confirm = require_confirm
        self.condition_lag = condition_lag
        self.orders: dict[str, SimOrder] = {}
        self.pos: dict[str, SimProductOrder] = {}
        self.records: dict[str, list[FeedRecord]] = {}
        self._seq = 0
        # caches (derived data only): the visible feed and the pay-date index
        self._feed_version = 0
        self._feed_cache: tuple[int, int, int, list[tuple[int, str, FeedRecord]]] | None = None
        self._paid_index: list[tuple[int, str, int]] | None = None

    # --- time, ids, feed ---------------------------------------------------------------------
    def now(self) -> int:
        return int(self.clock() * 1000)

    def when(self, at: datetime | None) -> int:
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
        self._feed_version += 1

    def touch(
        self, po_id: str, change_type: str, *, at: datetime | None = None, lag: float | None = None
    ) -> None:
        """Write a feed record of any type (tests: unknown types)."""
        self.po(po_id, SimError)
        self.bump(po_id, change_type, self.when(at), self.event_lag(lag))

    def visible_record(self, po_id: str) -> FeedRecord | None:
        now = self.now()
        visible = [
            (r.changed_at, i, r)
            for i, r in enumerate(self.records.get(po_id, []))
            if r.visible_at <= now
        ]
        return max(visible)[2] if visible else None  # same millisecond: the later write wins

    def _visible_rows(self) -> list[tuple[int, str, FeedRecord]]:
        """Every visible record as (changed_at, productOrderId, record), sorted; cached until
        the next write or the next record becoming visible."""
        now = self.now()
        cache = self._feed_cache
        if cache is not None and cache[0] == self._feed_version and cache[1] <= now < cache[2]:
            return cache[3]
        rows: list[tuple[int, str, FeedRecord]] = []
        pending = math.inf
        for po_id, records in self.records.items():
            for r in records:
                if r.visible_at > now:
                    pending = min(pending, r.visible_at)
            record = self.visible_record(po_id)
            if record is not None:
                rows.append((record.changed_at, po_id, record))
        rows.sort(key=lambda row: (row[0], row[1]))
        until = int(pending) if pending != math.inf else 2**62
        self._feed_cache = (self._feed_version, now, until, rows)
        return rows

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
        rows = self._visible_rows()
        first: tuple[int, str] = (start, "")
        if more_from is not None:
            first = max(first, (more_from, more_sequence or ""))
        i = bisect.bisect_left(rows, first, key=lambda row: (row[0], row[1]))
        page: list[FeedRecord] = []
        while i < len(rows) and rows[i][0] <= end:
            record = rows[i][2]
            i += 1
            if change_type and record.type != change_type:
                continue
            if len(page) == limit:
                return page, (record.changed_at, record.product_order_id)
            page.append(record)
        return page, None

    # --- condition query (spec §4.5) -------------------------------------------------------------
    def _range_times(self, po: SimProductOrder, range_type: str) -> list[int]:
        order = self.orders[po.order_id]
        claims = ([po.claim] if po.claim is not None else []) + [
            c for c in po.completed if c is not po.claim
        ]
        times: list[int | None]
        if range_type == "PAYED_DATETIME":
            times = [order.paid_at]
        elif range_type == "ORDERED_DATETIME":
            times = [order.ordered_at]
        elif range_type == "DISPATCHED_DATETIME":
            times = [po.delivery.get("sendDate") if po.delivery else None]
        elif range_type == "PURCHASE_DECIDED_DATETIME":
            times = [po.decided_at]
        elif range_type == "CLAIM_REQUESTED_DATETIME":
            times = [c.requested_at for c in claims]
        elif range_type == "CLAIM_COMPLETED_DATETIME":
            times = [c.completed_at for c in claims]
        elif range_type == "COLLECT_COMPLETED_DATETIME":
            times = [c.collected_at for c in claims]
        else:  # gifts and desired delivery dates are not simulated
            times = []
        return sorted(t for t in times if t is not None)

    def _paid(self) -> list[tuple[int, str, int]]:
        """(paid_at, productOrderId, indexed_at) of every paid product order, sorted."""
        if self._paid_index is None:
            rows = []
            for order in self.orders.values():
                if order.paid_at is not None:
                    for po_id in order.product_order_ids:
                        rows.append((order.paid_at, po_id, order.indexed_at))
            rows.sort()
            self._paid_index = rows
        return self._paid_index

    def condition_page(
        self,
        range_type: str,
        start: int,
        end: int,
        *,
        statuses: Collection[str] = (),
        claim_statuses: Collection[str] = (),
        place_status: str | None = None,
        page: int = 1,
        size: int = ep.CONDITION_PAGE_MAX,
    ) -> tuple[list[str], bool]:
        """Page ``page`` (1-based) of the product orders whose ``range_type`` time lies in
        ``[start, end]``, ascending by (time, productOrderId); and whether a next page exists."""
        now = self.now()
        hits: list[tuple[int, str]]
        if range_type == "PAYED_DATETIME":
            index = self._paid()
            lo = bisect.bisect_left(index, (start, ""))
            hits = []
            for k in range(lo, len(index)):
                paid_at, po_id, indexed_at = index[k]
                if paid_at > end:
                    break
                if indexed_at <= now:
                    hits.append((paid_at, po_id))
        else:
            hits = []
            for po_id, po in self.pos.items():
                if self.orders[po.order_id].indexed_at > now:
                    continue
                inside = [t for t in self._range_times(po, range_type) if start <= t <= end]
                if inside:
                    hits.append((inside[0], po_id))
            hits.sort()
        if statuses or claim_statuses or place_status:
            kept = []
            for hit in hits:
                po = self.pos[hit[1]]
                claim_status = po.claim.status if po.claim is not None else None
                if statuses and po.status not in statuses:
                    continue
                if claim_statuses and claim_status not in claim_statuses:
                    continue
                if place_status and po.place_status != place_status:
                    continue
                kept.append(hit)
            hits = kept
        offset = (page - 1) * size
        return [po_id for _t, po_id in hits[offset : offset + size]], len(hits) > offset + size

    # --- lookups --------------------------------------------------------------------------------
    def po(self, po_id: str, error: type[Exception] = Refusal) -> SimProductOrder:
        po = self.pos.get(po_id)
        if po is None:
            if error is Refusal:
                raise Refusal(ep.CODE_NOT_FOUND, "product order not found")
            raise SimError(f"unknown product order {po_id}")
        return po

    def detail(self, po_id: str) -> dict[str, Any] | None:
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
        when, lag_ms = self.when(at), self.event_lag(lag)
        order_id = self._next_id()
        shipping = naver_shipping_address(address or {"name": orderer_name})
        ids: list[str] = []
        line_lags: dict[str, int] = {}
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
            if line.get("lag") is not None:  # this line's record becomes visible at its own time
                line_lags[po_id] = int(1000 * float(line["lag"]))
        self.orders[order_id] = SimOrder(
            order_id,
            when,
            when if paid else None,
            payment_means,
            orderer_name,
            shipping["tel1"],
            int(mileage_used),
            ids,
            sum(self.pos[p].amount for p in ids),
            indexed_at=when + int(1000 * self.condition_lag),
        )
        self._paid_index = None
        for po_id in ids:
            self.bump(po_id, "PAYED" if paid else "PAY_WAITING", when, line_lags.get(po_id, lag_ms))
        return {"orderId": order_id, "productOrderIds": ids}

    def pay(self, order_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        order = self.orders.get(order_id)
        if order is None or order.paid_at is not None:
            raise SimError(f"order {order_id} is unknown or already paid")
        when, lag_ms = self.when(at), self.event_lag(lag)
        order.paid_at = when
        order.indexed_at = when + int(1000 * self.condition_lag)
        self._paid_index = None
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
        when, lag_ms = self.when(at), self.event_lag(lag)
        for po_id in targets:
            po = self.pos[po_id]
            po.address = naver_shipping_address(address)
            po.address_changed = True
            self.bump(po_id, "DELIVERY_ADDRESS_CHANGED", when, lag_ms)
        return targets

    def new_claim(
        self, po: SimProductOrder, claim_type: str, status: str, reason: str, channel: str, at: int
    ) -> SimClaim:
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

    def finish(self, po: SimProductOrder, status: str, at: int) -> SimClaim:
        claim = po.claim
        assert claim is not None
        claim.status = status
        claim.completed_at = at
        po.completed.append(claim)
        return claim

    def buyer_cancel_request(
        self,
        po_id: str,
        reason: str = "INTENT_CHANGED",
        *,
        at: datetime | None = None,
        lag: float | None = None,
    ) -> str:
        po = self.po(po_id, SimError)
        if po.status != "PAYED" or po.open_claim():
            raise SimError(f"{po_id}: cancel can be requested only while PAYED without a claim")
        when = self.when(at)
        claim = self.new_claim(po, "CANCEL", "CANCEL_REQUEST", reason, "BUYER", when)
        self.bump(po_id, "CLAIM_REQUESTED", when, self.event_lag(lag))
        return claim.claim_id

    def withdraw_cancel(
        self, po_id: str, *, at: datetime | None = None, lag: float | None = None
    ) -> None:
        po = self.po(po_id, SimError)
        claim = po.open_claim()
        if claim is None or claim.status != "CANCEL_REQUEST":
            raise SimError(f"{po_id}: no open cancel request")
        when = self.when(at)
        self.finish(po, "CANCEL_REJECT", when)
        self.bump(po_id, "CLAIM_REJECTED", when, self.event_lag(lag))

    def claim_after_dispatch(
        self,
        po_id: str,
        claim_type: str,
        reason: str,
        channel: str,
        at: datetime | None,
        lag: float | None,
        error: type[Exception],
    ) -> str:
        po = self.po(po_id, error)
        if po.status not in ("DELIVERING", "DELIVERED") or po.open_claim():
            message = f"{claim_type.lower()} needs a dispatched product order without a claim"
            if error is Refusal:
                raise Refusal(ep.CODE_WRONG_STATE, message)
            raise SimError(f"{po_id}: {message}")
        when = self.when(at)
        claim = self.new_claim(po, claim_type, f"{claim_type}_REQUEST", reason, channel, when)
        self.bump(po_id, "CLAIM_REQUESTED", when, self.event_lag(lag))
        return claim.claim_id

    def return_request(
        self,
        po_id: str,
        reason: str = "INTENT_CHANGED",
        *,
        at: datetime | None = None,
        lag: float | None = None,
    ) -> str:
        return self.claim_after_dispatch(po_id, "RETURN", reason, "BUYER", at, lag, SimError)

    def exchange_request(
        self,
        po_id: str,
        reason: str = "COLOR_AND_SIZE",
        *,
        at: datetime | None = None,
        lag: float | None = None,
    ) -> str:
        return self.claim_after_dispatch(po_id, "EXCHANGE", reason, "BUYER", at, lag, SimError)

    def collect_done(
        self, po_id: str, *, at: datetime | None = None, lag: float | None = None
    ) -> None:
        po = self.po(po_id, SimError)
        claim = po.open_claim()
        if claim is None or claim.status not in (
            "RETURN_REQUEST",
            "EXCHANGE_REQUEST",
            "COLLECTING",
        ):
            raise SimError(f"{po_id}: nothing to collect")
        when = self.when(at)
        claim.status, claim.collected_at = "COLLECT_DONE", when
        self.bump(po_id, "COLLECT_DONE", when, self.event_lag(lag))

    def purchase_decision(
        self, po_id: str, *, at: datetime | None = None, lag: float | None = None
    ) -> None:
        po = self.po(po_id, SimError)
        if po.status not in ("DELIVERING", "DELIVERED") or po.open_claim():
            raise SimError(f"{po_id}: purchase can be decided only after dispatch, without a claim")
        when = self.when(at)
        po.status, po.decided_at = "PURCHASE_DECIDED", when
        self.bump(po_id, "PURCHASE_DECIDED", when, self.event_lag(lag))

    def deliver(self, po_id: str, *, at: datetime | None = None, lag: float | None = None) -> None:
        """The carrier delivered: not a feed event (the record goes stale), except the end of an
        exchange re-delivery (``CLAIM_COMPLETED``)."""
        po = self.po(po_id, SimError)
        when = self.when(at)
        claim = po.open_claim()
        if claim is not None and claim.status == "EXCHANGE_REDELIVERING":
            self.finish(po, "EXCHANGE_DONE", when)
            po.status = "EXCHANGED"
            self.bump(po_id, "CLAIM_COMPLETED", when, self.event_lag(lag))
            return
        if po.status != "DELIVERING" or po.delivery is None:
            raise SimError(f"{po_id}: not on its way")
        po.status = "DELIVERED"
        po.delivery["deliveredDate"] = when
