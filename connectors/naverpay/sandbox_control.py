"""The sandbox's ``/_control/`` injection endpoints (buyer and system events, tokens).

Each maps to the same-named Python method of
:class:`~connectors.naverpay.sandbox.NaverPaySandbox` (table in that module's docstring). Bodies
are JSON objects; ``"at"`` (ISO date-time) and ``"lag"`` (seconds) are accepted by every event.
A refused event answers 409 ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from connectors.naverpay.dates import parse_dt
from connectors.naverpay.sim_state import SimError

if TYPE_CHECKING:
    from connectors.naverpay.sandbox import NaverPaySandbox

Body = dict[str, Any]


def parse_at(value: object) -> datetime | None:
    """``"at"`` of a control body (ISO date-time) or None; SimError when malformed."""
    if value in (None, ""):
        return None
    try:
        return parse_dt(str(value))
    except ValueError:
        raise SimError(f"bad 'at': {value!r}") from None


def _timing(body: Body) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.get("at"):
        out["at"] = parse_at(body["at"])
    if body.get("lag") is not None:
        out["lag"] = float(body["lag"])
    return out


def add_control_routes(sb: NaverPaySandbox, router: web.UrlDispatcher) -> None:
    """Register every injection endpoint of ``sb``."""

    def post(path: str, act: Callable[[web.Request, Body], Any]) -> None:
        async def handler(request: web.Request) -> web.Response:
            body: Any = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be a JSON object"}, status=400)
            try:
                result = act(request, body)
            except (SimError, KeyError, TypeError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=409)
            return web.json_response({"ok": True, "result": result})

        router.add_post(f"/_control/{path}", handler)

    def po_event(name: str, method: Callable[..., Any], with_reason: bool = False) -> None:
        def act(request: web.Request, body: Body) -> Any:
            args: list[Any] = [request.match_info["po_id"]]
            if with_reason and body.get("reason"):
                args.append(body["reason"])
            return method(*args, **_timing(body))

        post(f"product-orders/{{po_id}}/{name}", act)

    post(
        "orders",
        lambda r, b: sb.new_paid_order(
            b.get("lines"),
            address=b.get("address"),
            mileage_used=int(b.get("mileage_used", 0)),
            payment_means=str(b.get("payment_means", "신용카드")),
            paid=bool(b.get("paid", True)),
            **_timing(b),
        ),
    )
    post("orders/{order_id}/pay", lambda r, b: sb.pay(r.match_info["order_id"], **_timing(b)))
    post(
        "orders/{order_id}/address",
        lambda r, b: sb.change_address(r.match_info["order_id"], b["address"], **_timing(b)),
    )
    po_event("cancel-request", sb.buyer_cancel_request, with_reason=True)
    po_event("cancel-withdraw", sb.withdraw_cancel)
    po_event("return-request", sb.return_request, with_reason=True)
    po_event("exchange-request", sb.exchange_request, with_reason=True)
    po_event("collect-done", sb.collect_done)
    po_event("purchase-decision", sb.purchase_decision)
    po_event("deliver", sb.deliver)
    post(
        "product-orders/{po_id}/touch",
        lambda r, b: sb.touch(r.match_info["po_id"], str(b["type"]), **_timing(b)),
    )
    post(
        "seller-centre/dispatch",
        lambda r, b: sb.seller_centre_dispatch(
            [str(i) for i in b["productOrderIds"]],
            str(b["deliveryCompanyCode"]),
            str(b["trackingNumber"]),
            at=_timing(b).get("at"),
        ),
    )
    post("tokens/expire", lambda r, b: sb.expire_tokens())

    def answer_delay(r: web.Request, b: Body) -> float:
        sb.answer_delay = float(b.get("seconds", 0))
        return sb.answer_delay

    def deny(r: web.Request, b: Body) -> bool:
        sb.deny_api_group = bool(b.get("deny", True))
        return sb.deny_api_group

    post("answer-delay", answer_delay)
    post("deny-api-group", deny)

    async def detail(request: web.Request) -> web.Response:
        found = sb.detail(request.match_info["po_id"])
        if found is None:
            return web.json_response({"error": "unknown product order"}, status=404)
        return web.json_response(found)

    router.add_get("/_control/product-orders/{po_id}", detail)
