"""The Naver Commerce API client (Naver Pay order-type checkout), a ``MarketplaceConnector``.

* ingestion: :meth:`NaverPayClient.changes_since` reads the change feed in ≤ 24 h windows,
  follows ``more`` paging, then reads every product order's detail (≤ 300 per query) and returns
  the facts it proves (:mod:`connectors.naverpay.changes`, R17). An order paid in the window is
  completed with all its product orders from the condition query by pay date (300 per page, read
  concurrently with the feed, its contents replace the detail query), so a backlog of n new
  orders costs about n/300 calls per endpoint; ``product-order-ids`` is asked only for an order
  the condition query did not return whole (paid before the window, not yet searchable);
* writes: confirm and dispatch (≤ 30 per call), delay (R13), seller cancel (R16: dispatched units
  become returns), approve cancel, returns and holds (R14, :mod:`connectors.naverpay.claims`),
  exchanges; ``reject_cancel`` is unsupported by Naver (R29: dispatching refuses a cancel);
* :meth:`NaverPayClient.claim_states` is the R29 check before any dispatch.

Retry, rate-limit, token and result semantics are those of :mod:`connectors.naverpay.transport`
(reads retried; writes resent only when Naver certainly did not execute them; one
:class:`ItemResult` per product order; credentials never in errors or logs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import httpx

from connectors.base import DEFAULT_RETRY_POLICY, RetryPolicy
from connectors.contract import ClaimState, DispatchItem, ItemResult, UnsupportedOperationError
from connectors.errors import AuthenticationError, PermanentError, ValidationError
from connectors.naverpay import endpoints as ep
from connectors.naverpay.changes import FeedEntry, build_changes, latest_per_product_order
from connectors.naverpay.claims import NaverClaimOps
from connectors.naverpay.dates import KST, format_dt, parse_opt
from connectors.naverpay.feed import (
    DEFAULT_WINDOW,
    Window,
    condition_params,
    first_page_params,
    next_page_params,
    windows,
)
from connectors.naverpay.mapping import (
    CancelUnit,
    claim_state,
    dispatch_payload,
    item_results,
    naver_cancel_reason,
    naver_carrier_code,
    plan_cancel,
)
from store.domain import Channel, InvoiceKind
from store.errors import InvalidInvoiceError
from store.invoices import validate_invoice
from topics.changes import ChannelChange

log = logging.getLogger(__name__)

Json = dict[str, Any]
_MAX_CACHED_ORDERS = 20_000


class NaverPayClient(NaverClaimOps):
    """Naver Commerce API seller client. See the module docstring for its promises."""

    channel = Channel.NAVERPAY
    max_dispatch_batch = ep.WRITE_BATCH_MAX

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        account: str = "default",
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_per_second: float | None = ep.DOCUMENTED_RATE,
        endpoint_rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] | None = None,
        token_type: str = "SELF",
        seller_account_id: str | None = None,
        feed_window: timedelta = DEFAULT_WINDOW,
        feed_page_size: int = ep.FEED_PAGE_MAX,
        max_feed_pages: int = 10_000,
        detail_batch: int = ep.QUERY_BATCH_MAX,
        condition_page_size: int = ep.CONDITION_PAGE_MAX,
        complete_orders: bool = True,
        prevalidate_invoices: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: Any = None,
    ) -> None:
        if not 1 <= feed_page_size <= ep.FEED_PAGE_MAX:
            raise ValueError(f"feed_page_size is 1..{ep.FEED_PAGE_MAX}")
        if not 1 <= detail_batch <= ep.QUERY_BATCH_MAX:
            raise ValueError(f"detail_batch is 1..{ep.QUERY_BATCH_MAX}")
        if not 1 <= condition_page_size <= ep.CONDITION_PAGE_MAX:
            raise ValueError(f"condition_page_size is 1..{ep.CONDITION_PAGE_MAX}")
        if feed_window > timedelta(hours=ep.FEED_WINDOW_MAX_HOURS):
            raise ValueError(f"feed_window is at most {ep.FEED_WINDOW_MAX_HOURS} h")
        super().__init__(
            base_url,
            client_id,
            client_secret,
            account=account,
            timeout=timeout,
            retry=retry,
            rate_per_second=rate_per_second,
            endpoint_rates=endpoint_rates,
            clock=clock,
            token_type=token_type,
            seller_account_id=seller_account_id,
            transport=transport,
            observer=observer,
        )
        self.feed_window = feed_window
        self.feed_page_size = feed_page_size
        self.max_feed_pages = max_feed_pages
        self.detail_batch = detail_batch
        self.condition_page_size = condition_page_size
        self.complete_orders = complete_orders
        self.prevalidate_invoices = prevalidate_invoices
        self._order_units: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> NaverPayClient:
        """A client configured from :class:`channelsync.settings.Settings` (``NAVERPAY_*``)."""
        kw: dict[str, Any] = {
            "account": settings.naverpay_account_id,
            "timeout": settings.http_timeout_seconds,
            "retry": RetryPolicy.from_settings(settings),
            "rate_per_second": settings.naverpay_rate_per_second,
        }
        kw.update(overrides)
        return cls(
            settings.naverpay_api_url,
            settings.naverpay_client_id,
            settings.naverpay_client_secret.get_secret_value(),
            **kw,
        )

    # --- reads -----------------------------------------------------------------------------------
    async def feed_entries(
        self,
        since: datetime,
        until: datetime,
        on_window: Callable[[Window], None] | None = None,
    ) -> list[FeedEntry]:
        """Every feed entry with ``since <= lastChangedDate < until``, all windows and pages
        (entries of product orders whose record moved between pages may repeat).
        ``on_window(window)`` is called as soon as a window's first page shows entries."""
        out: list[FeedEntry] = []
        for window in windows(since, until, self.feed_window):
            params = first_page_params(window, self.feed_page_size)
            for page in range(self.max_feed_pages):
                data = (await self._request("last_changed", params=params)).get("data") or {}
                items = data.get("lastChangeStatuses") or []
                if page == 0 and items and on_window is not None:
                    on_window(window)
                for item in items:
                    try:
                        entry = FeedEntry.from_json(item)
                    except ValueError as exc:
                        log.warning("naverpay feed item skipped: %s", exc)
                        continue
                    if since <= entry.changed_at < until:
                        out.append(entry)
                more = data.get("more")
                if not more:
                    break
                if not items:
                    log.warning("naverpay feed answered 'more' with an empty page; stopping")
                    break
                params = next_page_params(params, more)
            else:
                log.error("naverpay feed: %d pages in one window, stopping", self.max_feed_pages)
        return out

    async def paid_in_window(self, window: Window) -> tuple[dict[str, Json], set[str]]:
        """The condition query by pay date over one inclusive ``window`` (≤ 24 h), every page:
        ``(details by productOrderId, orders returned whole)``. An order counts as whole when
        its pay date is inside the window and every page was read (one payment pays all of an
        order's product orders, so they match the range together). A refused query (4xx other
        than auth) is logged and answers nothing: the caller falls back to product-order-ids."""
        details: dict[str, Json] = {}
        try:
            for page in range(1, self.max_feed_pages + 1):
                params = condition_params(window, page, self.condition_page_size)
                data = (await self._request("condition", params=params)).get("data") or {}
                contents = data.get("contents") or []
                for item in contents:
                    content = item.get("content") or {}
                    po_id = item.get("productOrderId") or (content.get("productOrder") or {}).get(
                        "productOrderId"
                    )
                    if po_id and content:
                        details[str(po_id)] = content
                if not (data.get("pagination") or {}).get("hasNext"):
                    break
                if not contents:
                    log.warning("naverpay condition query: hasNext with an empty page; stopping")
                    return details, set()
            else:
                log.error("naverpay condition query: %d pages, stopping", self.max_feed_pages)
                return details, set()
        except AuthenticationError:
            raise
        except PermanentError as exc:
            log.warning("naverpay condition query refused, completing orders one by one: %s", exc)
            return {}, set()
        whole: set[str] = set()
        for detail in details.values():
            order = detail.get("order") or {}
            paid_at = parse_opt(order.get("paymentDate"))
            if order.get("orderId") and paid_at and window.start <= paid_at <= window.end:
                whole.add(str(order["orderId"]))
        return details, whole

    async def product_orders(self, unit_ids: Sequence[str]) -> dict[str, Json]:
        """Details by productOrderId, in batches of ``detail_batch``; ids Naver does not return
        (unknown / foreign) are absent from the answer."""
        wanted = list(dict.fromkeys(unit_ids))
        out: dict[str, Json] = {}
        for i in range(0, len(wanted), self.detail_batch):
            chunk = wanted[i : i + self.detail_batch]
            body = {"productOrderIds": chunk, "quantityClaimCompatibility": True}
            data = (await self._request("query", body=body)).get("data") or []
            for detail in data:
                po_id = (detail.get("productOrder") or {}).get("productOrderId")
                if po_id:
                    out[str(po_id)] = detail
        return out

    async def product_order_ids(self, order_id: str) -> tuple[str, ...]:
        """All product orders of an order (cached: the set is fixed once the order exists)."""
        cached = self._order_units.get(order_id)
        if cached is not None:
            self._order_units.move_to_end(order_id)
            return cached
        data = await self._request("product_order_ids", ids={"order_id": order_id})
        units = tuple(str(u) for u in data.get("data") or [])
        self._remember_units(order_id, units)
        return units

    def _remember_units(self, order_id: str, units: tuple[str, ...]) -> None:
        self._order_units[order_id] = units
        self._order_units.move_to_end(order_id)
        while len(self._order_units) > _MAX_CACHED_ORDERS:
            self._order_units.popitem(last=False)

    async def changes_since(self, since: datetime, until: datetime) -> list[ChannelChange]:
        """Facts behind every feed entry changed in ``[since, until)`` (R17), built from the
        product-order detail, never from the feed's possibly stale status. Facts carry their own
        times and stable ``change_key`` s; callers de-duplicate by key. With
        ``complete_orders`` an ORDER_PAID lists every product order of its order."""
        if not self.complete_orders:
            latest = latest_per_product_order(await self.feed_entries(since, until))
            details = await self.product_orders(list(latest))
            return build_changes(latest.values(), details, account=self.account, now=self._now())
        reads: list[asyncio.Task[tuple[dict[str, Json], set[str]]]] = []

        def read_paid(window: Window) -> None:  # runs beside the rest of the feed
            reads.append(asyncio.create_task(self.paid_in_window(window)))

        try:
            entries = await self.feed_entries(since, until, on_window=read_paid)
            results = [await task for task in reads]
        finally:
            for task in reads:
                task.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
        paid: dict[str, Json] = {}
        whole: set[str] = set()
        for found, orders in results:
            paid.update(found)
            whole |= orders
        latest = latest_per_product_order(entries)
        queried = await self.product_orders([u for u in latest if u not in paid])
        details = {u: paid.get(u) or queried[u] for u in latest if u in paid or u in queried}
        await self._complete(latest, details, paid, whole)
        return build_changes(latest.values(), details, account=self.account, now=self._now())

    async def _complete(
        self,
        latest: Mapping[str, FeedEntry],
        details: dict[str, Json],
        paid: Mapping[str, Json],
        whole: set[str],
    ) -> None:
        """Add every sibling of each paid order in ``latest`` to ``details``: from the condition
        query when it returned the order whole, else from product-order-ids (cached)."""
        paid_orders = {
            str(order["orderId"])
            for d in details.values()
            if (order := d.get("order") or {}).get("orderId") and order.get("paymentDate")
        }
        by_order: dict[str, list[str]] = {}
        for po_id, detail in paid.items():
            order_id = (detail.get("order") or {}).get("orderId")
            if order_id:
                by_order.setdefault(str(order_id), []).append(po_id)
        fed: dict[str, set[str]] = {}
        for entry in latest.values():
            fed.setdefault(entry.order_id, set()).add(entry.product_order_id)
        missing: list[str] = []
        for order_id in sorted(fed):
            if order_id not in paid_orders:
                continue
            found = by_order.get(order_id, [])
            if order_id in whole and fed[order_id] <= set(found):
                self._remember_units(order_id, tuple(sorted(found)))
                for po_id in found:
                    details.setdefault(po_id, paid[po_id])
                continue
            try:
                units = await self.product_order_ids(order_id)
            except PermanentError as exc:  # keep ingesting; the ORDER_PAID stays partial
                log.warning("naverpay order %s: siblings not listed: %s", order_id, exc)
                continue
            for unit in units:
                if unit in details:
                    continue
                if unit in paid:
                    details[unit] = paid[unit]
                else:
                    missing.append(unit)
        if missing:
            details.update(await self.product_orders(missing))

    async def claim_states(
        self, unit_ids: Sequence[str], *, exact: bool = False
    ) -> dict[str, ClaimState]:
        """R29: the current claim view of each product order (absent: Naver did not return it).
        Always exact (the detail query carries the dispatch state), so ``exact`` changes nothing."""
        return {u: claim_state(d) for u, d in (await self.product_orders(unit_ids)).items()}

    # --- writes: placement and dispatch ------------------------------------------------------------
    async def confirm_orders(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """Placement confirmation (발주확인), ≤ 30 per call. ``detail['receiver_address_changed']``
        is Naver's address-change flag (R12: the caller raises the delivery hold)."""

        async def op(chunk: Sequence[str]) -> list[ItemResult]:
            answer = await self._request(
                "confirm", body={"productOrderIds": list(chunk)}, write=True
            )
            return item_results(answer.get("data"), chunk, trace_id=answer.get("traceId"))

        return await self._each(list(dict.fromkeys(unit_ids)), str, ep.WRITE_BATCH_MAX, op)

    def _precheck(self, item: DispatchItem) -> tuple[DispatchItem | None, ItemResult | None]:
        if item.kind is InvoiceKind.PARCEL and naver_carrier_code(item.carrier) is None:
            return None, ItemResult(
                item.unit_id, False, "CARRIER_UNSUPPORTED", f"{item.carrier} has no Naver code"
            )
        if self.prevalidate_invoices and item.kind is InvoiceKind.PARCEL:
            try:
                number = validate_invoice(item.carrier, item.tracking_number, item.kind)
            except InvalidInvoiceError as exc:
                return None, ItemResult(
                    item.unit_id,
                    False,
                    "R18",
                    exc.message,
                    detail={"rule": "R18", "check": exc.check, "sent": False},
                )
            item = replace(item, tracking_number=number)
        return item, None

    async def dispatch(self, items: Sequence[DispatchItem]) -> list[ItemResult]:
        """Register dispatches, ≤ 30 per call (more are split). A product order with an open
        buyer cancel request is dispatched and its cancel refused by Naver (R29: check
        :meth:`claim_states` first). Invoices failing the carrier's number rule are refused
        locally without a call (R18, ``code='R18'``) unless ``prevalidate_invoices`` is off."""
        results: list[ItemResult] = []
        ready: list[DispatchItem] = []
        seen: set[str] = set()
        for item in items:
            if item.unit_id in seen:
                results.append(
                    ItemResult(item.unit_id, False, ep.CODE_DUPLICATE_ID, "duplicate in request")
                )
                continue
            seen.add(item.unit_id)
            checked, refused = self._precheck(item)
            if refused is not None:
                results.append(refused)
            elif checked is not None:
                ready.append(checked)

        async def op(chunk: Sequence[DispatchItem]) -> list[ItemResult]:
            body = {"dispatchProductOrders": [dispatch_payload(i) for i in chunk]}
            answer = await self._request("dispatch", body=body, write=True)
            return item_results(
                answer.get("data"), [i.unit_id for i in chunk], trace_id=answer.get("traceId")
            )

        sent = await self._each(ready, lambda i: i.unit_id, self.max_dispatch_batch, op)
        return sent + results

    async def delay_dispatch(
        self, unit_ids: Sequence[str], due_date: date, reason: str, detail: str
    ) -> list[ItemResult]:
        """R13: dispatch delay, one request per product order (Naver has no batch form); the
        caller passes one order's product orders. ``reason`` is Naver's
        ``delayedDispatchReason`` enum (``ValidationError`` otherwise, before any call)."""
        if reason not in ep.DELAY_REASONS:
            raise ValidationError(
                f"naverpay delay reason {reason!r} not in {sorted(ep.DELAY_REASONS)}",
                code=ep.CODE_BAD_REQUEST,
            )
        if not detail.strip():
            raise ValidationError(
                "naverpay delay needs a detailed reason", code=ep.CODE_BAD_REQUEST
            )
        due = format_dt(datetime.combine(due_date, dtime(23, 59, 59), KST))
        body = {
            "dispatchDueDate": due,
            "delayedDispatchReason": reason,
            "dispatchDelayedDetailedReason": detail[:300],
        }
        return await self._per_id("delay", unit_ids, lambda _u: body)

    # --- writes: cancels ---------------------------------------------------------------------------
    async def cancel(
        self, unit_ids: Sequence[str], reason: str, buyer_message: str | None = None
    ) -> list[ItemResult]:
        """Seller cancel of whole product orders (R16). A product order Naver shows dispatched
        is sent as a return request instead (``detail['converted_to_return']``)."""
        naver_reason = naver_cancel_reason(reason)
        units = list(dict.fromkeys(unit_ids))
        states = await self.claim_states(units)
        plan = plan_cancel(
            [CancelUnit(u, 1, 1, bool(states.get(u) and states[u].dispatched)) for u in units]
        )
        text = (buyer_message or reason)[:500]
        results = await self._per_id(
            "cancel_request",
            plan.cancel,
            lambda _u: {"cancelReason": naver_reason, "cancelDetailedReason": text},
        )
        if plan.returns:
            returned = await self.return_request(plan.returns, naver_reason, detail=text)
            results += [
                replace(r, detail={**r.detail, "converted_to_return": True, "rule": "R16"})
                for r in returned
            ]
        return results

    async def approve_cancel(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """Approve buyer cancel requests (refund follows)."""
        return await self._per_id("cancel_approve", unit_ids)

    async def reject_cancel(self, unit_ids: Sequence[str], reason: str) -> list[ItemResult]:
        """Not offered by Naver: there is no ``claim/cancel/reject`` endpoint. On Naver a buyer
        cancel request is refused by *dispatching* the product order (R29), so the operator's
        "refuse the cancel and ship" decision is a dispatch. Always raises
        :class:`UnsupportedOperationError`."""
        raise UnsupportedOperationError(
            "naverpay has no cancel-reject API: a buyer cancel request is refused by "
            "dispatching the product order (R29); send the dispatch with the claim check "
            "overridden instead",
            code="UNSUPPORTED",
        )
