"""Qoo10 QAPI sandbox: a loopback server that answers like ``api.qoo10.jp`` for what the client
uses, with buyer / J-QSM actions injectable.

Served forms (qoo10.md §1): ``POST|GET /GMKT.INC.Front.QAPIService/ebayjapan.qapi/{Class}.{Method}``
(method names case-insensitive) and the legacy ``…/ebayjapan.qapi?method=…&key=…``. Always HTTP 200
with the ``ResultCode`` envelope, except the shared fault injection (5xx) and quota (429 with
``Retry-After``). Keys: CreateCertificationKey checks the API key header and the QSM login and
issues a seller key; other methods answer ErrorCode -90001 (no/unknown key), ResultCode -10000
(key revoked by a password change) or -90004 (expired).

Python-level injection (tests) — every method has a ``/_control/`` twin (JSON bodies):

==================================  ========================================================
``new_order(**kw) -> order_no``     ``POST /_control/orders`` {qty, price, sku, title, pack_no,
                                    paid_at (ISO), paid} → {order_no, pack_no}
``order(order_no)``                 ``GET /_control/orders/{order_no}``
``buyer_cancel(no, reason)``        ``POST /_control/buyer/cancel`` {order_no, reason} →
                                    {outcome: canceled | requested}  (R25)
``withdraw_cancel(no)``             ``POST /_control/buyer/withdraw`` {order_no}
``return_request(no, reason)``      ``POST /_control/buyer/return`` {order_no, reason}
``deliver(no)``                     ``POST /_control/delivery`` {order_no}
``decide_purchase(no)``             ``POST /_control/buyer/purchase_decision`` {order_no}
``qsm_approve_cancel(no)`` /        ``POST /_control/qsm/approve_cancel`` |
``qsm_reject_cancel(no)`` /         ``/_control/qsm/reject_cancel`` |
``complete_return(no)``             ``/_control/qsm/complete_return`` {order_no}
``expire_keys()`` /                 ``POST /_control/keys`` {"expire": true} |
``revoke_keys(new_password)``       {"revoke": true, "new_password": "…"}
``fail_messages(count, code)``      ``POST /_control/messages`` {fail, result_code}  (R23)
``inject_result_code(m, code, n)``  ``POST /_control/result_codes`` {method, result_code, count}
``inject_item_code(no, code, n)``   ``POST /_control/item_codes`` {order_no, result_code, count}
``drop_item_rows(no, n)``           ``POST /_control/drop_item_rows`` {order_no, count}
==================================  ========================================================

``SetSendingInfoBulk`` (§5.6) takes ``ShippingInfoJson`` (a JSON array of at most 500
``{"OrderNo","ShippingCorp","TrackingNo"}``; more answers -10011, a non-array -10001) and applies
each row like ``SetSendingInfo``, in order: ``ResultCode`` 0 with one ``ResultObject`` row
``{"contr_no", "result_cd", "transc_nm"}`` per requested row (``transc_nm`` = the result text,
*(sim)*). Faults, quotas and ``inject_result_code`` act on the whole call; ``inject_item_code``
refuses one order's row (no effect), ``drop_item_rows`` applies the row but leaves it out of the
answer (a lost per-item outcome).

An action impossible in the order's state answers 409 ``{"error": …}`` (ActionError in Python).
Plus the shared ``GET /_control/ledger``, ``POST /_control/faults``, ``POST /_control/reset``,
``GET /_control/health``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from channelsync.settings import Settings
from connectors.qoo10 import codes
from connectors.qoo10.rules import BuyerCancelOutcome
from connectors.qoo10.sandbox_model import ActionError, SandboxOrder, SearchError
from connectors.qoo10.sandbox_rows import claim_row, detail_row, shipping_row
from connectors.qoo10.sandbox_world import Qoo10World
from connectors.qoo10.wire import KEY_HEADER
from connectors.sandbox import Sandbox, serve_forever

_DEFAULTS = Settings.model_fields


def _default_secret(name: str) -> str:
    value = _DEFAULTS[name].default
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


DEFAULT_API_KEY = _default_secret("qoo10_api_key")
DEFAULT_USER_ID = _default_secret("qoo10_user_id")
DEFAULT_PASSWORD = _default_secret("qoo10_password")

Envelope = dict[str, Any]

#: Methods served (canonical names; matched without case).
SERVED_METHODS = (
    codes.CREATE_CERTIFICATION_KEY,
    codes.GET_SHIPPING_INFO,
    codes.GET_CLAIM_INFO,
    codes.GET_ORDER_DETAIL,
    codes.SET_SELLER_CHECK,
    codes.SET_SENDING_INFO,
    codes.SET_SENDING_INFO_BULK,
    codes.SET_CANCEL_PROCESS,
    codes.SEND_BUYER_MESSAGE,
)


def _envelope(code: int, message: str, result: Any = None) -> Envelope:
    body: Envelope = {"ResultCode": code, "ResultMsg": message}
    if result is not None:
        body["ResultObject"] = result
    return body


class Qoo10Sandbox(Sandbox):
    """See the module docstring. ``lag_seconds`` delays what the list methods show (a change
    becomes listable that long after it happened); ``clock`` replaces the wall clock."""

    name = "qoo10"

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        user_id: str = DEFAULT_USER_ID,
        password: str = DEFAULT_PASSWORD,
        rates: dict[str, float] | None = None,
        seed: int | None = None,
        lag_seconds: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api_key, self.user_id, self.password = api_key, user_id, password
        self._by_lower = {m.lower(): m for m in SERVED_METHODS}
        super().__init__(rates=rates, seed=seed)
        self.world = Qoo10World(self.ledger, clock=clock, lag=timedelta(seconds=lag_seconds))
        self.keys: dict[str, str] = {}  # seller key -> valid | expired | revoked
        self._message_failures: list[int] = []
        self._injected: dict[str, list[tuple[int, str]]] = {}
        self._item_codes: dict[str, list[int]] = {}
        self._dropped_rows: Counter[str] = Counter()

    # --- routes --------------------------------------------------------------------------------

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        for method in SERVED_METHODS:
            path = f"{codes.QAPI_PATH}/{method}"
            self.route(router, "POST", path, method, self._serve)
            self.route(router, "GET", path, method, self._serve)
        for verb in ("POST", "GET"):
            self.route(router, verb, codes.QAPI_PATH + "/{name}", "qapi.other", self._serve)
            self.route(router, verb, codes.QAPI_PATH, "qapi.legacy", self._serve)
        control: dict[str, Callable[[dict[str, Any]], Any]] = {
            "orders": self._ctl_new_order,
            "buyer/cancel": lambda b: {
                "outcome": self.buyer_cancel(b["order_no"], b.get("reason", "changed mind"))
            },
            "buyer/withdraw": lambda b: self.withdraw_cancel(b["order_no"]),
            "buyer/return": lambda b: self.return_request(b["order_no"], b.get("reason", "")),
            "buyer/purchase_decision": lambda b: self.decide_purchase(b["order_no"]),
            "delivery": lambda b: self.deliver(b["order_no"]),
            "qsm/approve_cancel": lambda b: self.qsm_approve_cancel(b["order_no"]),
            "qsm/reject_cancel": lambda b: self.qsm_reject_cancel(b["order_no"]),
            "qsm/complete_return": lambda b: self.complete_return(b["order_no"]),
            "keys": self._ctl_keys,
            "messages": lambda b: self.fail_messages(
                int(b.get("fail", 1)),
                int(b.get("result_code", codes.ORDER_NOT_FOUND_OR_DATE_ERROR)),
            ),
            "result_codes": lambda b: self.inject_result_code(
                b["method"], int(b["result_code"]), int(b.get("count", 1)), b.get("message", "")
            ),
            "item_codes": lambda b: self.inject_item_code(
                str(b["order_no"]), int(b["result_code"]), int(b.get("count", 1))
            ),
            "drop_item_rows": lambda b: self.drop_item_rows(
                str(b["order_no"]), int(b.get("count", 1))
            ),
        }
        for path, action in control.items():
            router.add_post(f"/_control/{path}", self._control(action))
        router.add_get("/_control/orders/{order_no}", self._ctl_order)

    def rate_limited_response(self, endpoint: str) -> web.Response:
        resp = web.json_response(
            {"ErrorCode": codes.SYSTEM_BUSY, "ErrorMsg": f"too many requests on {endpoint}"},
            status=429,
        )
        resp.headers["Retry-After"] = "1"
        return resp

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        return web.json_response(
            {"ErrorCode": codes.SYSTEM_BUSY, "ErrorMsg": f"{code}: {message}"}, status=status
        )

    def reset(self) -> None:
        """Forget orders, ledger, faults and injections (issued seller keys stay valid)."""
        super().reset()
        self.world.reset()
        self._message_failures.clear()
        self._injected.clear()
        self._item_codes.clear()
        self._dropped_rows.clear()

    # --- Python-level injection ----------------------------------------------------------------

    def new_order(self, **kw: Any) -> str:
        """A paid order (see :meth:`Qoo10World.new_order` for the keywords); its order number."""
        return self.world.new_order(**kw).order_no

    def order(self, order_no: str) -> SandboxOrder:
        return self.world.get(order_no)

    def buyer_cancel(self, order_no: str, reason: str = "changed mind") -> str:
        """R25: "canceled" (refunded at once) or "requested" (needs approval)."""
        outcome: BuyerCancelOutcome = self.world.buyer_cancel(order_no, reason)
        return outcome.value

    def withdraw_cancel(self, order_no: str) -> None:
        self.world.withdraw_cancel(order_no)

    def return_request(self, order_no: str, reason: str = "damaged") -> None:
        self.world.return_request(order_no, reason or "damaged")

    def deliver(self, order_no: str) -> None:
        self.world.deliver(order_no)

    def decide_purchase(self, order_no: str) -> None:
        self.world.decide_purchase(order_no)

    def qsm_approve_cancel(self, order_no: str) -> None:
        self.world.qsm_approve_cancel(order_no)

    def qsm_reject_cancel(self, order_no: str) -> None:
        self.world.qsm_reject_cancel(order_no)

    def complete_return(self, order_no: str) -> None:
        self.world.complete_return(order_no)

    def expire_keys(self) -> None:
        """Every issued seller key answers -90004 from now on."""
        for key in self.keys:
            self.keys[key] = "expired"

    def revoke_keys(self, new_password: str | None = None) -> None:
        """A QSM password change: issued keys answer -10000; ``new_password`` replaces the login."""
        for key in self.keys:
            self.keys[key] = "revoked"
        if new_password is not None:
            self.password = new_password

    def fail_messages(self, count: int = 1, result_code: int = -10002) -> None:
        """The next ``count`` buyer messages fail with ``result_code`` (R23)."""
        self._message_failures.extend([result_code] * count)

    def inject_result_code(self, method: str, code: int, count: int = 1, message: str = "") -> None:
        """The next ``count`` calls of ``method`` answer ``code`` without any effect."""
        self._injected.setdefault(method.lower(), []).extend([(code, message)] * count)

    def inject_item_code(self, order_no: str, code: int, count: int = 1) -> None:
        """The next ``count`` SetSendingInfoBulk rows for ``order_no`` answer ``result_cd`` =
        ``code`` without any effect (the rest of the call is applied normally)."""
        self._item_codes.setdefault(str(order_no), []).extend([code] * count)

    def drop_item_rows(self, order_no: str, count: int = 1) -> None:
        """The next ``count`` SetSendingInfoBulk rows for ``order_no`` are applied but left out
        of the answer: the caller cannot know the outcome."""
        self._dropped_rows[str(order_no)] += count

    # --- QAPI ----------------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
        prefix = codes.QAPI_PATH + "/"
        name = (
            request.path[len(prefix) :]
            if request.path.startswith(prefix)
            else params.get("method", "")
        )
        method = self._by_lower.get(name.lower())
        if method is None:
            known = {m.split(".", 1)[0].lower() for m in SERVED_METHODS}
            what = "method Info" if name.split(".", 1)[0].lower() in known else "service Name"
            return web.Response(text=f"Can't find {what} : {name}")
        key = request.headers.get(KEY_HEADER) or params.get("key", "")
        if method == codes.CREATE_CERTIFICATION_KEY:
            return web.json_response(self._create_key(key, params))
        refused = self._check_key(key)
        if refused is not None:
            return web.json_response(refused)
        pending = self._injected.get(method.lower())
        if pending:
            code, message = pending.pop(0)
            self.ledger.record("injected_code", method, code=code)
            return web.json_response(_envelope(code, message or "injected"))
        return web.json_response(self._dispatch(method, params))

    def _create_key(self, api_key: str, params: dict[str, str]) -> Envelope:
        if api_key != self.api_key:
            return {"ErrorCode": codes.API_NOT_FOUND, "ErrorMsg": "API key is not valid"}
        if params.get("user_id") != self.user_id or params.get("pwd") != self.password:
            return _envelope(codes.CHECK_SELLER_KEY, "user id or password is not valid")
        sak = f"SAK{self.random.getrandbits(96):024x}"
        self.keys[sak] = "valid"
        self.ledger.record("key_issued", self.user_id)
        return _envelope(codes.OK, "SUCCESS", sak)

    def _check_key(self, key: str) -> Envelope | None:
        state = self.keys.get(key)
        if state is None:
            return {"ErrorCode": codes.API_NOT_FOUND, "ErrorMsg": "certification key required"}
        if state == "revoked":
            return _envelope(codes.CHECK_SELLER_KEY, "Please check the Seller Authorization Key.")
        if state == "expired":
            return _envelope(codes.KEY_EXPIRED, "Seller authorization key is expired.")
        return None

    def _dispatch(self, method: str, p: dict[str, str]) -> Envelope:
        world = self.world
        if method == codes.GET_ORDER_DETAIL:
            order = world.orders.get(p.get("OrderNo", ""))
            return _envelope(codes.OK, "SUCCESS", [detail_row(order)] if order else [])
        try:
            if method == codes.GET_SHIPPING_INFO:
                lo, hi = world.window(p.get("SearchStartDate", ""), p.get("SearchEndDate", ""))
                status, condition = p.get("ShippingStatus", ""), p.get("SearchCondition", "")
                rows = world.shipping_list(status, condition, lo, hi)
                return _envelope(codes.OK, "SUCCESS", [shipping_row(o) for o in rows])
            if method == codes.GET_CLAIM_INFO:
                lo, hi = world.window(p.get("search_Sdate", ""), p.get("search_Edate", ""))
                stat, condition = p.get("ClaimStat", ""), p.get("search_condition", "")
                found = world.claim_list(stat, condition, lo, hi)
                return _envelope(codes.OK, "SUCCESS", [claim_row(o, c) for o, c in found])
        except SearchError as exc:
            return _envelope(*exc.answer)
        if method == codes.SET_SELLER_CHECK:
            return _envelope(
                *world.confirm(
                    p.get("OrderNo", ""),
                    p.get("EstShipDt", ""),
                    p.get("DelayType", ""),
                    p.get("DelayMemo", ""),
                )
            )
        if method == codes.SET_SENDING_INFO:
            return _envelope(
                *world.send(
                    p.get("OrderNo", ""), p.get("ShippingCorp", ""), p.get("TrackingNo", "")
                )
            )
        if method == codes.SET_SENDING_INFO_BULK:
            return self._send_bulk(p.get(codes.SENDING_INFO_JSON_FIELD, ""))
        if method == codes.SET_CANCEL_PROCESS:
            return _envelope(
                *world.cancel(
                    p.get("ContrNo", ""), p.get("CancelReason", ""), p.get("SellerMemo", "")
                )
            )
        if method == codes.SEND_BUYER_MESSAGE:
            if self._message_failures:
                code = self._message_failures.pop(0)
                self.ledger.record("message_failed", p.get("OrderNo", ""), code=code)
                return _envelope(code, "Fail")
            return _envelope(
                *world.message(p.get("OrderNo", ""), p.get("Title", ""), p.get("Message", ""))
            )
        return _envelope(codes.API_NOT_FOUND, "The API does not exist")

    def _send_bulk(self, raw: str) -> Envelope:
        """SetSendingInfoBulk: each row as SetSendingInfo, in order, one answer row each."""
        try:
            rows = json.loads(raw) if raw.strip() else None
        except ValueError:
            rows = None
        if not isinstance(rows, list) or not rows:
            return _envelope(
                codes.SELLER_OR_ORDER_INVALID, "ShippingInfoJson must be a non-empty JSON array"
            )
        if len(rows) > codes.MAX_BULK_ROWS:
            return _envelope(codes.BULK_TOO_LARGE, f"at most {codes.MAX_BULK_ROWS} rows")
        answer: list[dict[str, Any]] = []
        for row in rows:
            if not isinstance(row, dict):
                answer.append(
                    {
                        "contr_no": "",
                        "result_cd": codes.SELLER_OR_ORDER_INVALID,
                        "transc_nm": "row must be an object",
                    }
                )
                continue
            order_no = str(row.get("OrderNo", "")).strip()
            injected = self._item_codes.get(order_no)
            if injected:
                code, message = injected.pop(0), "injected"
                self.ledger.record("injected_item_code", order_no, code=code)
            else:
                code, message = self.world.send(
                    order_no, str(row.get("ShippingCorp", "")), str(row.get("TrackingNo", ""))
                )
            if self._dropped_rows[order_no] > 0:
                self._dropped_rows[order_no] -= 1
                continue
            answer.append({"contr_no": order_no, "result_cd": code, "transc_nm": message})
        return _envelope(codes.OK, "SUCCESS", answer)

    # --- control -------------------------------------------------------------------------------

    def _control(self, action: Callable[[dict[str, Any]], Any]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            try:
                body = await request.json() if request.can_read_body else {}
                result = action(body)
            except ActionError as exc:
                return web.json_response({"error": str(exc)}, status=409)
            except (KeyError, ValueError, TypeError) as exc:
                return web.json_response({"error": f"bad request: {exc!r}"}, status=400)
            return web.json_response(result if isinstance(result, dict) else {"ok": True})

        return handler

    def _ctl_new_order(self, body: dict[str, Any]) -> dict[str, Any]:
        kw: dict[str, Any] = {
            k: body[k] for k in ("qty", "price", "sku", "title", "pack_no", "paid") if k in body
        }
        if body.get("paid_at"):
            kw["paid_at"] = datetime.fromisoformat(body["paid_at"])
        order = self.world.new_order(**kw)
        return {"order_no": order.order_no, "pack_no": order.pack_no}

    def _ctl_keys(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("expire"):
            self.expire_keys()
        if body.get("revoke"):
            self.revoke_keys(body.get("new_password"))
        return {"ok": True, "keys": len(self.keys)}

    async def _ctl_order(self, request: web.Request) -> web.Response:
        order = self.world.orders.get(request.match_info["order_no"])
        if order is None:
            return web.json_response({"error": "unknown order"}, status=404)
        body = {"shipping": shipping_row(order), "detail": detail_row(order)}
        return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))


async def main(host: str = "127.0.0.1", port: int = 0) -> None:
    """``channelsync sandbox qoo10``: serve a sandbox with the settings' default credentials."""
    await serve_forever(Qoo10Sandbox(), host, port)
