"""The sandbox's API endpoints: request validation and Naver's answer shapes (spec §3–§5).

Malformed requests answer HTTP 400 ``{"code": "4000", …}`` (``000400`` for an empty
``deliveryCompanyCode``, ``104139`` for a feed or condition-query range over 24 h, ``104133``
for a range ending before it starts); state refusals of a write are per item, HTTP 200 with
``failProductOrderInfos`` (§5.2). Unknown ids in a detail query are left out of the answer
(UNCONFIRMED on Naver; the connector accounts for every id).

The condition query ``GET …/product-orders`` (§4.5) takes ``from`` (required), ``to`` (default
from + 24 h; both inclusive), ``rangeType`` (default ``PAYED_DATETIME``), ``productOrderStatuses``
and ``claimStatuses`` (repeated keys or comma lists), ``placeOrderStatusType``, ``pageSize``
(1..300, default 300; outside → 400: UNCONFIRMED whether Naver refuses or clamps), ``page``
(≥ 1, default 1); ``fulfillment`` and ``quantityClaimCompatibility`` are accepted and ignored.
It answers ``data.contents[] = {productOrderId, content}`` (``content`` as in ``…/query``) and
``data.pagination = {page, size, hasNext}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from connectors.naverpay import endpoints as ep
from connectors.naverpay.dates import parse_dt
from connectors.naverpay.sim_state import Refusal, ms_text, to_ms

if TYPE_CHECKING:
    from connectors.naverpay.sandbox import NaverPaySandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = dict[str, Any]
Check = Callable[[Body], str | None]

MAX_WINDOW = timedelta(hours=ep.FEED_WINDOW_MAX_HOURS)
PER_ID_ENDPOINTS = frozenset(
    {
        "delay",
        "cancel_request",
        "cancel_approve",
        "return_request",
        "return_approve",
        "return_reject",
        "return_holdback",
        "return_holdback_release",
        "exchange_collect_approve",
        "exchange_dispatch",
        "exchange_reject",
        "exchange_holdback",
        "exchange_holdback_release",
    }
)


def processing(success: list[str], fails: list[dict[str, str]]) -> Body:
    return {"successProductOrderIds": success, "failProductOrderInfos": fails}


def _enum(field: str, allowed: frozenset[str]) -> Check:
    def check(body: Body) -> str | None:
        return None if body.get(field) in allowed else f"{field} must be one of {sorted(allowed)}"

    return check


def _text(*fields: str) -> Check:
    def check(body: Body) -> str | None:
        for name in fields:
            value = body.get(name)
            if not isinstance(value, str) or not value.strip():
                return f"{name} is required"
        return None

    return check


def _all(*checks: Check) -> Check:
    def check(body: Body) -> str | None:
        for one in checks:
            problem = one(body)
            if problem:
                return problem
        return None

    return check


def _many(query: Any, name: str) -> frozenset[str]:
    """An array parameter: repeated keys (``a=X&a=Y``), ``a[]=X`` or a comma list."""
    values = [*query.getall(name, []), *query.getall(f"{name}[]", [])]
    return frozenset(v.strip() for value in values for v in value.split(",") if v.strip())


def _none(body: Body) -> str | None:
    return None


def _fee(field: str) -> Check:
    def check(body: Body) -> str | None:
        value = body.get(field)
        if value is None or (isinstance(value, int) and value >= 0):
            return None
        return f"{field} must be a non-negative integer"

    return check


class SandboxApi:
    """Request handlers bound to one sandbox."""

    def __init__(self, sandbox: NaverPaySandbox) -> None:
        self.sb = sandbox

    def handler(self, name: str) -> Handler:
        fixed: dict[str, Handler] = {
            "last_changed": self.last_changed,
            "query": self.query,
            "product_order_ids": self.product_order_ids,
            "condition": self.condition,
            "confirm": self.confirm,
            "dispatch": self.dispatch,
        }
        if name in fixed:
            return fixed[name]
        if name not in PER_ID_ENDPOINTS:
            raise KeyError(f"no sandbox handler for {name}")

        async def per_id(request: web.Request) -> web.StreamResponse:
            check, act = self._per_id_ops()[name]  # the desk exists only after start-up
            return await self._per_id(request, check, act)

        return per_id

    def _bad(
        self, request: web.Request, message: str, code: str = ep.CODE_BAD_REQUEST
    ) -> web.Response:
        return self.sb.fail(request, 400, code, message)

    async def _body(self, request: web.Request) -> Any:
        if not request.can_read_body:
            return {}
        try:
            return await request.json()
        except ValueError:
            return None

    # --- reads ---------------------------------------------------------------------------------
    async def last_changed(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            start = parse_dt(q["lastChangedFrom"])
            end = parse_dt(q["lastChangedTo"]) if "lastChangedTo" in q else start + MAX_WINDOW
        except KeyError:
            return self._bad(request, "lastChangedFrom is required")
        except ValueError:
            return self._bad(request, "date-time must be yyyy-MM-ddTHH:mm:ss.SSS+09:00")
        if end < start:
            return self._bad(request, "lastChangedTo before lastChangedFrom", "104133")
        if end - start > MAX_WINDOW:
            return self._bad(request, "queryable date range exceeded", ep.CODE_RANGE_EXCEEDED)
        try:
            limit = min(ep.FEED_PAGE_MAX, int(q.get("limitCount", ep.FEED_PAGE_MAX)))
        except ValueError:
            return self._bad(request, "limitCount must be a number")
        sequence = q.get("moreSequence")
        # Resuming: lastChangedFrom is the previous page's moreFrom (spec §3.4).
        resume = to_ms(start) if sequence else None
        page, more = self.sb.world.feed_page(
            to_ms(start),
            to_ms(end),
            change_type=q.get("lastChangedType"),
            more_from=resume,
            more_sequence=sequence,
            limit=max(1, limit),
        )
        data: Body = {"lastChangeStatuses": [r.as_json() for r in page], "count": len(page)}
        if more is not None:
            data["more"] = {"moreFrom": ms_text(more[0]), "moreSequence": more[1]}
        return self.sb.ok(request, data)

    async def condition(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            start = parse_dt(q["from"])
            end = parse_dt(q["to"]) if "to" in q else start + MAX_WINDOW
        except KeyError:
            return self._bad(request, "from is required")
        except ValueError:
            return self._bad(request, "date-time must be yyyy-MM-ddTHH:mm:ss.SSS+09:00")
        if end < start:
            return self._bad(request, "to before from", "104133")
        if end - start > MAX_WINDOW:
            return self._bad(request, "queryable date range exceeded", ep.CODE_RANGE_EXCEEDED)
        range_type = q.get("rangeType", "PAYED_DATETIME")
        if range_type not in ep.RANGE_TYPES:
            return self._bad(request, f"rangeType must be one of {sorted(ep.RANGE_TYPES)}")
        try:
            size = int(q.get("pageSize", ep.CONDITION_PAGE_MAX))
            page = int(q.get("page", 1))
        except ValueError:
            return self._bad(request, "pageSize and page must be numbers")
        if not 1 <= size <= ep.CONDITION_PAGE_MAX:
            return self._bad(request, f"pageSize must be 1..{ep.CONDITION_PAGE_MAX}")
        if page < 1:
            return self._bad(request, "page must be >= 1")
        statuses = _many(q, "productOrderStatuses")
        claim_statuses = _many(q, "claimStatuses")
        place = q.get("placeOrderStatusType") or None
        if not statuses <= ep.PRODUCT_ORDER_STATUSES:
            return self._bad(request, "unknown productOrderStatuses value")
        if not claim_statuses <= ep.CLAIM_STATUSES:
            return self._bad(request, "unknown claimStatuses value")
        if place is not None and place not in ep.PLACE_ORDER_STATUSES:
            return self._bad(request, "unknown placeOrderStatusType value")
        world = self.sb.world
        ids, has_next = world.condition_page(
            range_type,
            to_ms(start),
            to_ms(end),
            statuses=statuses,
            claim_statuses=claim_statuses,
            place_status=place,
            page=page,
            size=size,
        )
        contents = [{"productOrderId": i, "content": world.detail(i)} for i in ids]
        data = {
            "contents": contents,
            "pagination": {"page": page, "size": size, "hasNext": has_next},
        }
        return self.sb.ok(request, data)

    async def query(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        ids = body.get("productOrderIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > ep.QUERY_BATCH_MAX:
            return self._bad(request, f"productOrderIds: 1..{ep.QUERY_BATCH_MAX} ids")
        details = [self.sb.world.detail(str(i)) for i in dict.fromkeys(ids)]
        return self.sb.ok(request, [d for d in details if d is not None])

    async def product_order_ids(self, request: web.Request) -> web.StreamResponse:
        order = self.sb.world.orders.get(request.match_info["order_id"])
        if order is None:
            return self._bad(request, "order not found", ep.CODE_ORDER_NOT_FOUND)
        return self.sb.ok(request, list(order.product_order_ids))

    # --- batch writes --------------------------------------------------------------------------
    async def _ids_body(self, request: web.Request, field: str) -> list[Any] | web.Response:
        body = await self._body(request)
        items = body.get(field) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or len(items) > ep.WRITE_BATCH_MAX:
            return self._bad(request, f"{field}: 1..{ep.WRITE_BATCH_MAX} items")
        return items

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        ids = await self._ids_body(request, "productOrderIds")
        if isinstance(ids, web.Response):
            return ids
        success, fails, seen = [], [], set()
        for raw in ids:
            po_id = str(raw)
            try:
                if po_id in seen:
                    raise Refusal(ep.CODE_DUPLICATE_ID, "duplicate productOrderId")
                seen.add(po_id)
                changed = self.sb.desk.confirm(po_id)
                success.append({"productOrderId": po_id, "isReceiverAddressChanged": changed})
            except Refusal as exc:
                fails.append({"productOrderId": po_id, "code": exc.code, "message": exc.message})
        data = {"successProductOrderInfos": success, "failProductOrderInfos": fails}
        return self.sb.ok(request, data)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        items = await self._ids_body(request, "dispatchProductOrders")
        if isinstance(items, web.Response):
            return items
        if any(not isinstance(i, dict) for i in items):
            return self._bad(request, "dispatchProductOrders items must be objects")
        if any(i.get("deliveryCompanyCode") == "" for i in items):
            return self._bad(request, "HttpMessageNotReadableException", "000400")
        success: list[str] = []
        fails: list[dict[str, str]] = []
        seen: set[str] = set()
        for item in items:
            po_id = str(item.get("productOrderId", ""))
            try:
                if po_id in seen:
                    raise Refusal(ep.CODE_DUPLICATE_ID, "duplicate productOrderId")
                seen.add(po_id)
                self.sb.desk.dispatch(item)
                success.append(po_id)
            except Refusal as exc:
                fails.append({"productOrderId": po_id, "code": exc.code, "message": exc.message})
                self.sb.ledger.record("refused:dispatch", po_id, code=exc.code)
        return self.sb.ok(request, processing(success, fails))

    # --- per-id writes -------------------------------------------------------------------------
    async def _per_id(
        self, request: web.Request, check: Check, act: Callable[[str, Body], None]
    ) -> web.StreamResponse:
        body = await self._body(request)
        if not isinstance(body, dict):
            return self._bad(request, "body must be a JSON object")
        problem = check(body)
        if problem:
            return self._bad(request, problem)
        po_id = request.match_info["po_id"]
        try:
            act(po_id, body)
        except Refusal as exc:
            fail = {"productOrderId": po_id, "code": exc.code, "message": exc.message}
            return self.sb.ok(request, processing([], [fail]))
        return self.sb.ok(request, processing([po_id], []))

    def _per_id_ops(self) -> dict[str, tuple[Check, Callable[[str, Body], None]]]:
        desk = self.sb.desk

        def delay(po: str, b: Body) -> None:
            try:
                due = parse_dt(str(b.get("dispatchDueDate")))
            except ValueError:
                raise Refusal(ep.CODE_BAD_REQUEST, "dispatchDueDate is malformed") from None
            desk.delay(po, due, b["delayedDispatchReason"], b["dispatchDelayedDetailedReason"])

        def hold(kind: str) -> Callable[[str, Body], None]:
            infix = kind.capitalize()
            return lambda po, b: desk.holdback(
                po,
                kind,
                b["holdbackClassType"],
                b[f"holdback{infix}DetailReason"],
                int(b.get(f"extra{infix}FeeAmount") or 0),
            )

        return {
            "delay": (
                _all(
                    _text("dispatchDueDate", "dispatchDelayedDetailedReason"),
                    _enum("delayedDispatchReason", ep.DELAY_REASONS),
                ),
                delay,
            ),
            "cancel_request": (
                _enum("cancelReason", ep.CANCEL_REASONS),
                lambda po, b: desk.seller_cancel(
                    po, b["cancelReason"], str(b.get("cancelDetailedReason") or "")
                ),
            ),
            "cancel_approve": (_none, lambda po, b: desk.approve_cancel(po)),
            "return_request": (
                _all(_enum("returnReason", ep.RETURN_REASONS), _text("collectDeliveryMethod")),
                lambda po, b: desk.seller_return_request(
                    po, b["returnReason"], str(b.get("returnDetailedReason") or "")
                ),
            ),
            "return_approve": (_none, lambda po, b: desk.return_approve(po)),
            "return_reject": (
                _text("rejectReturnReason"),
                lambda po, b: desk.claim_reject(po, "RETURN", b["rejectReturnReason"]),
            ),
            "return_holdback": (
                _all(
                    _enum("holdbackClassType", ep.HOLDBACK_CLASSES),
                    _text("holdbackReturnDetailReason"),
                    _fee("extraReturnFeeAmount"),
                ),
                hold("RETURN"),
            ),
            "return_holdback_release": (_none, lambda po, b: desk.holdback_release(po, "RETURN")),
            "exchange_collect_approve": (_none, lambda po, b: desk.exchange_collect_approve(po)),
            "exchange_dispatch": (_none, lambda po, b: desk.exchange_dispatch(po, b)),
            "exchange_reject": (
                _text("rejectExchangeReason"),
                lambda po, b: desk.claim_reject(po, "EXCHANGE", b["rejectExchangeReason"]),
            ),
            "exchange_holdback": (
                _all(
                    _enum("holdbackClassType", ep.HOLDBACK_CLASSES),
                    _text("holdbackExchangeDetailReason"),
                    _fee("extraExchangeFeeAmount"),
                ),
                hold("EXCHANGE"),
            ),
            "exchange_holdback_release": (
                _none,
                lambda po, b: desk.holdback_release(po, "EXCHANGE"),
            ),
        }
