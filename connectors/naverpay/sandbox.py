"""A local Naver Commerce API (the endpoints the connector uses) for tests, the demo and benches.

Behaves like the service where the client depends on it (spec §8): bcrypt signature and 5-minute
timestamp window on ``POST /v1/oauth2/token`` (form body only; query-string or JSON token calls
set the app-wide ``GW.QUOTA_LIMIT`` penalty), the 30-minute token reuse rule, 401 ``GW.AUTHN`` on
expired or revoked tokens, per-endpoint token buckets answering 429 ``GW.RATE_LIMIT`` (2 req/s,
burst 4 by default), the lagging, latest-record-only change feed with ``more`` paging and the
24 h window limit (400 ``104139``), the condition query (``page``/``hasNext`` paging, ≤ 300 per
page, ≤ 24 h, rate-limited like every endpoint; an order is found ``condition_lag`` seconds after
its payment, all its product orders at once), per-item failures in ``failProductOrderInfos`` and
a ledger of every side effect (see :mod:`connectors.naverpay.simulator` for the state model).

Python-level injections (each also under ``/_control/``, JSON body, answers JSON; every body may
carry ``"at"`` (ISO date-time of the change) and ``"lag"`` (visibility lag in seconds); a line of
``new_paid_order`` may carry its own ``"lag"``):

=============================================  ===============================================
method                                         control endpoint and body
=============================================  ===============================================
``new_paid_order(lines, address=…,             ``POST /_control/orders`` ``{"lines": [{"name",
mileage_used=…, payment_means=…, paid=True)``  "quantity", "unit_price", "sku", "option"}],
→ ``{"orderId", "productOrderIds"}``           "address": {"name", "phone", "zip_code",
                                               "line1", "line2"}, "mileage_used", "paid"}``
``pay(order_id)``                              ``POST /_control/orders/{orderId}/pay``
``change_address(order_id, address)``          ``POST /_control/orders/{orderId}/address``
                                               ``{"address": {…}}``
``buyer_cancel_request(po, reason)``           ``POST /_control/product-orders/{id}/cancel-request``
``withdraw_cancel(po)``                        ``POST …/{id}/cancel-withdraw``
``return_request(po, reason)``                 ``POST …/{id}/return-request``
``exchange_request(po, reason)``               ``POST …/{id}/exchange-request``
``collect_done(po)``                           ``POST …/{id}/collect-done``
``purchase_decision(po)``                      ``POST …/{id}/purchase-decision``
``deliver(po)``                                ``POST …/{id}/deliver``
``touch(po, change_type)``                     ``POST …/{id}/touch`` ``{"type": "…"}``
``seller_centre_dispatch(pos, company,         ``POST /_control/seller-centre/dispatch``
tracking)``                                    ``{"productOrderIds", "deliveryCompanyCode",
                                               "trackingNumber"}``
``expire_tokens()``                            ``POST /_control/tokens/expire``
attribute ``answer_delay`` (executed, answer late) ``POST /_control/answer-delay`` ``{"seconds"}``
attribute ``deny_api_group`` (401 everywhere)  ``POST /_control/deny-api-group`` ``{"deny"}``
``detail(po)``                                 ``GET /_control/product-orders/{id}``
=============================================  ===============================================

Plus the shared ``GET /_control/ledger``, ``POST /_control/faults``, ``POST /_control/reset``,
``GET /_control/health``. A refused injection answers 409 ``{"error": …}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import bcrypt
from aiohttp import web

from channelsync.settings import Settings
from connectors.naverpay import endpoints as ep
from connectors.naverpay.dates import format_dt, from_epoch
from connectors.naverpay.sandbox_api import SandboxApi
from connectors.naverpay.sandbox_control import add_control_routes
from connectors.naverpay.sim_state import Refusal
from connectors.naverpay.simulator import NaverWorld
from connectors.naverpay.simulator_seller import SellerDesk
from connectors.sandbox import QuotaLimiter, Sandbox, serve_forever

DEFAULT_SECRET = Settings.model_fields["naverpay_client_secret"].default.get_secret_value()
DEFAULT_MAX_LAG = 600.0
TOKEN_REUSE_SECONDS = 1800.0
TIMESTAMP_WINDOW_MS = 5 * 60 * 1000
TRACE_HEADER = "GNCP-GW-Trace-ID"
TRACE_KEY = web.RequestKey("trace_id", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NaverPaySandbox(Sandbox):
    """The Naver Commerce API on loopback. See the module docstring."""

    name = "naverpay"

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = DEFAULT_SECRET,
        visibility_lag: float | Callable[[], float] | None = DEFAULT_MAX_LAG,
        rates: dict[str, float] | float | None = None,
        token_ttl: float = 10_800,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        require_confirm: bool = False,
        penalty_seconds: float = 3600.0,
        condition_lag: float = 0.0,
    ) -> None:
        if rates is None:
            rate_map = {name: ep.DOCUMENTED_RATE for name in ep.API_ENDPOINTS}
        elif isinstance(rates, int | float):
            rate_map = {name: float(rates) for name in ep.API_ENDPOINTS}
        else:
            rate_map = dict(rates)
        super().__init__(rates=rate_map, seed=seed)
        self.quota = QuotaLimiter(rate_map, burst=ep.DOCUMENTED_BURST)
        self.client_id = client_id
        self._secret = client_secret
        self.token_ttl = token_ttl
        self.clock: Callable[[], float] = clock or time.time
        self.visibility_lag = visibility_lag
        self.require_confirm = require_confirm
        self.condition_lag = condition_lag
        self.penalty_seconds = penalty_seconds
        self.penalty_until = 0.0
        self.deny_api_group = False  # True: every bearer token answers 401 (missing API group)
        self.answer_delay = 0.0  # seconds to hold an API answer *after* executing the request
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (key, expires_at)
        self._current: dict[str, str] = {}  # key -> newest token
        self._trace = 0
        self.app.on_response_prepare.append(self._decorate)
        self._new_world()

    def _new_world(self) -> None:
        self.world = NaverWorld(
            clock=self.clock,
            lag=self._draw_lag,
            ledger=self.ledger,
            require_confirm=self.require_confirm,
            condition_lag=self.condition_lag,
        )
        self.desk = SellerDesk(self.world)

    def _draw_lag(self) -> float:
        lag = self.visibility_lag
        if lag is None:
            return 0.0
        if callable(lag):
            return float(lag())
        return self.random.uniform(0, float(lag))

    def reset(self) -> None:
        super().reset()
        self.tokens.clear()
        self._current.clear()
        self.penalty_until = 0.0
        self.deny_api_group = False
        self.answer_delay = 0.0
        self._new_world()

    # --- Naver response shapes ---------------------------------------------------------------
    def now_text(self) -> str:
        return format_dt(from_epoch(self.clock()))

    def trace_id(self, request: web.Request | None = None) -> str:
        if request is not None and TRACE_KEY in request:
            return request[TRACE_KEY]
        self._trace += 1
        value = f"sandbox-{self._trace:08d}"
        if request is not None:
            request[TRACE_KEY] = value
        return value

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        body = {"code": code, "message": message, "timestamp": self.now_text()}
        body["traceId"] = self.trace_id()
        return web.json_response(body, status=status, headers={TRACE_HEADER: body["traceId"]})

    def rate_limited_response(self, endpoint: str) -> web.Response:
        resp = self.error_response(429, "GW.RATE_LIMIT", f"rate limit exceeded on {endpoint}")
        rate = self.quota.rates.get(endpoint) or 1.0
        resp.headers["Retry-After"] = str(max(1, math.ceil(1 / rate)))
        return resp

    def ok(self, request: web.Request, data: Any) -> web.Response:
        trace = self.trace_id(request)
        body = {"timestamp": self.now_text(), "traceId": trace, "data": data}
        return web.json_response(body, headers={TRACE_HEADER: trace})

    def fail(self, request: web.Request, status: int, code: str, message: str) -> web.Response:
        resp = self.error_response(status, code, message)
        request[TRACE_KEY] = resp.headers[TRACE_HEADER]
        return resp

    async def _decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/_control/"):
            return
        response.headers.setdefault(TRACE_HEADER, self.trace_id(request))
        endpoint = self._endpoint_of.get(request.match_info.route.resource.canonical, "")  # type: ignore[union-attr]
        rate = self.quota.rates.get(endpoint)
        if rate:
            response.headers["GNCP-GW-RateLimit-Replenish-Rate"] = f"{rate:g}"
            response.headers["GNCP-GW-RateLimit-Burst-Capacity"] = f"{rate * ep.DOCUMENTED_BURST:g}"

    # --- auth ----------------------------------------------------------------------------------
    def _penalised(self, request: web.Request) -> web.Response | None:
        if self.clock() >= self.penalty_until:
            return None
        resp = self.fail(request, 429, "GW.QUOTA_LIMIT", "quota exceeded (non-standard token call)")
        resp.headers.update(
            {
                "GNCP-GW-Quota-Period": "HOURS",
                "GNCP-GW-Quota-Limit": "1",
                "GNCP-GW-Quota-Remaining": "0",
            }
        )
        return resp

    def api(self, handler: Handler) -> Handler:
        """Wrap an API handler: penalty, then the bearer token."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            penalty = self._penalised(request)
            if penalty is not None:
                return penalty
            auth = request.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            entry = self.tokens.get(token)
            if self.deny_api_group or entry is None or entry[1] <= self.clock():
                return self.fail(request, 401, "GW.AUTHN", "authentication failed")
            response = await handler(request)
            if self.answer_delay:  # executed, but the answer is late (client timeouts)
                await asyncio.sleep(self.answer_delay)
            return response

        return wrapped

    def _token_error(self, request: web.Request, name: str, message: str) -> web.Response:
        trace = self.trace_id(request)
        body = {
            "code": "BAD_REQUEST",
            "message": message,
            "timestamp": self.now_text(),
            "traceId": trace,
            "invalidInputs": [{"name": name, "type": "invalid", "message": message}],
            "data": {},
        }
        return web.json_response(body, status=400, headers={TRACE_HEADER: trace})

    async def handle_token(self, request: web.Request) -> web.StreamResponse:
        penalty = self._penalised(request)
        if penalty is not None:
            return penalty
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        if (
            request.query
            or not form
            or "grant_type" not in form
            or (form.get("type") == "SELF" and form.get("account_id"))
        ):
            self.penalty_until = self.clock() + self.penalty_seconds
            self.ledger.record("token_penalty", form.get("client_id") or "?")
            return self._token_error(request, "request", "non-standard token request")
        return self._issue(request, form)

    def _issue(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        if form.get("grant_type") != "client_credentials":
            return self._token_error(request, "grant_type", "grant_type must be client_credentials")
        if form.get("client_id") != self.client_id:
            return self._token_error(request, "client_id", "unknown client_id")
        stamp = form.get("timestamp", "")
        now_ms = int(self.clock() * 1000)
        if not (stamp.isdigit() and len(stamp) == 13):
            return self._token_error(request, "timestamp", "timestamp must be 13-digit ms")
        if int(stamp) > now_ms:
            return self._token_error(request, "timestamp", "timestamp must be before now")
        if now_ms - int(stamp) > TIMESTAMP_WINDOW_MS:
            return self._token_error(request, "timestamp", "timestamp expired")
        password = f"{self.client_id}_{stamp}".encode()
        expected = base64.b64encode(bcrypt.hashpw(password, self._secret.encode())).decode()
        if not hmac.compare_digest(expected, form.get("client_secret_sign", "")):
            return self._token_error(request, "client_secret_sign", "invalid client_secret_sign")
        kind = form.get("type")
        if kind not in ("SELF", "SELLER") or (kind == "SELLER" and not form.get("account_id")):
            return self._token_error(request, "type", "type is SELF or SELLER (with account_id)")
        key = f"{self.client_id}:{kind}:{form.get('account_id', '')}"
        now = self.clock()
        current = self._current.get(key)
        if current and self.tokens[current][1] - now >= TOKEN_REUSE_SECONDS:
            token, expires_at = current, self.tokens[current][1]
        else:
            token = f"{self.random.getrandbits(160):040x}"
            expires_at = now + self.token_ttl
            self.tokens[token] = (key, expires_at)
            self._current[key] = token
            self.ledger.record("token_issued", key)
        body = {"access_token": token, "expires_in": int(expires_at - now), "token_type": "Bearer"}
        return web.json_response(body, headers={TRACE_HEADER: self.trace_id(request)})

    def expire_tokens(self) -> int:
        """Make every issued token expired (the next API call answers 401)."""
        now = self.clock()
        for token, (key, _exp) in list(self.tokens.items()):
            self.tokens[token] = (key, now)
        return len(self.tokens)

    # --- routes --------------------------------------------------------------------------------
    def setup_routes(self, router: web.UrlDispatcher) -> None:
        api = SandboxApi(self)
        method, token_path = ep.ENDPOINTS["token"]
        self.route(router, method, token_path, "token", self.handle_token)
        for name, (verb, template) in ep.ENDPOINTS.items():
            if name == "token":
                continue
            route_path = template.replace("{id}", "{po_id}")
            self.route(router, verb, route_path, name, self.api(api.handler(name)))
        add_control_routes(self, router)

    # --- Python-level injections ---------------------------------------------------------------
    def new_paid_order(
        self, lines: list[dict[str, Any]] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """A new order (paid unless ``paid=False``); returns ``{"orderId", "productOrderIds"}``."""
        if "address" in kw and hasattr(kw["address"], "model_dump"):
            kw["address"] = kw["address"].model_dump()
        return self.world.new_order(lines or [{"name": "Item", "quantity": 1}], **kw)

    def pay(self, order_id: str, **kw: Any) -> None:
        self.world.pay(order_id, **kw)

    def change_address(self, order_id: str, address: Any, **kw: Any) -> list[str]:
        data = address.model_dump() if hasattr(address, "model_dump") else dict(address)
        return self.world.change_address(order_id, data, **kw)

    def buyer_cancel_request(self, po_id: str, reason: str = "INTENT_CHANGED", **kw: Any) -> str:
        return self.world.buyer_cancel_request(po_id, reason, **kw)

    def withdraw_cancel(self, po_id: str, **kw: Any) -> None:
        self.world.withdraw_cancel(po_id, **kw)

    def return_request(self, po_id: str, reason: str = "INTENT_CHANGED", **kw: Any) -> str:
        return self.world.return_request(po_id, reason, **kw)

    def exchange_request(self, po_id: str, reason: str = "COLOR_AND_SIZE", **kw: Any) -> str:
        return self.world.exchange_request(po_id, reason, **kw)

    def collect_done(self, po_id: str, **kw: Any) -> None:
        self.world.collect_done(po_id, **kw)

    def purchase_decision(self, po_id: str, **kw: Any) -> None:
        self.world.purchase_decision(po_id, **kw)

    def deliver(self, po_id: str, **kw: Any) -> None:
        self.world.deliver(po_id, **kw)

    def touch(self, po_id: str, change_type: str, **kw: Any) -> None:
        self.world.touch(po_id, change_type, **kw)

    def seller_centre_dispatch(
        self, po_ids: list[str], company: str, tracking: str, *, at: datetime | None = None
    ) -> dict[str, str]:
        """Dispatch done by a person in the seller centre (not through the API); returns
        ``{productOrderId: "ok" | "<code>: <message>"}``."""
        out = {}
        for po_id in po_ids:
            item: dict[str, Any] = {
                "productOrderId": po_id,
                "deliveryMethod": "DELIVERY",
                "deliveryCompanyCode": company,
                "trackingNumber": tracking,
            }
            if at is not None:
                item["dispatchDate"] = format_dt(at)
            try:
                self.desk.dispatch(item, source="seller_centre")
                out[po_id] = "ok"
            except Refusal as exc:
                out[po_id] = str(exc)
        return out

    def detail(self, po_id: str) -> dict[str, Any] | None:
        return self.world.detail(po_id)


async def main(host: str = "127.0.0.1", port: int = 18081) -> None:
    """Serve a sandbox until cancelled (``channelsync sandbox naverpay``)."""
    await serve_forever(NaverPaySandbox(), host, port)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(description="Naver Commerce API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
