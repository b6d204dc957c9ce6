"""Goodsflow sandbox: a local Platform Open API for tests, the demo and benchmarks.

Serves the paths the client uses (goodsflow.md §3) in the real envelope, checks the raw
``Authorization`` key, refuses print items without an APPROVED contract for the center and
carrier, assigns carrier-valid waybill numbers (:func:`store.invoices.generate_valid_number`)
when labels are printed, walks each parcel through pickup → in transit → out for delivery →
delivered on its clock (computed on read, no background task), and queues every status event
for the consume-once webhook pull (and an optional push to a callback URL). State and JSON
shapes live in :mod:`connectors.goodsflow.sandbox_world`.

Python-level control: :meth:`print_waybills`, :meth:`never_pickup`, :meth:`advance`,
:meth:`advance_clock`, :meth:`set_contract`, :meth:`parcel`, :meth:`push_callbacks`.
HTTP control (JSON bodies): ``POST /_control/print {"ids": [...]}`` (no ids: all unprinted),
``POST /_control/never_pickup {"ref": number|serviceId|uniqueId}``,
``POST /_control/advance {"ref": ..., "status": "PICKUP"|"IN_TRANSIT"|"DLV_START"|"COMPLETED"|
"DLV_FAILED"|"PICKUP_FAILED"|"RETURNED"}``, ``POST /_control/clock {"seconds": n}``,
``POST /_control/contract {"transporter": "HANJIN", "status": "REFUSED"}``,
``POST /_control/callbacks {"url": ...}``, ``GET /_control/parcels``; plus the shared
``/_control/ledger|faults|reset|health``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from connectors.goodsflow.mapping import KST, format_time
from connectors.goodsflow.models import Center
from connectors.goodsflow.sandbox_parcels import Parcel, ParcelStateError
from connectors.goodsflow.sandbox_world import GoodsflowWorld
from connectors.sandbox import Sandbox, serve_forever

DEFAULT_API_KEY = "sandbox-goodsflow-key"  # = Settings.goodsflow_api_key's default
DEFAULT_SENDER = Center(
    code="1000000001",
    name="Sandbox Warehouse",
    phone="0212345678",
    zip_code="06095",
    address1="1 Sandbox-ro, Gangnam-gu, Seoul",
    address2="Warehouse 3F",
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ENDPOINTS = (
    ("GET", "/api/centers", "centers", "_centers"),
    ("GET", "/api/centers/default", "centers", "_center_default"),
    ("GET", "/api/centers/{code}", "centers", "_center"),
    ("GET", "/api/contracts", "contracts", "_contracts"),
    ("POST", "/api/deliveries/shipping/print", "print", "_print_flat"),
    ("POST", "/api/deliveries/shipping/print/deliveryItems", "print", "_print_grouped"),
    ("PUT", "/api/deliveries/shipping/print-uri", "print_uri", "_print_uri"),
    ("POST", "/api/deliveries/tracking", "tracking_register", "_register_tracking"),
    ("GET", "/api/deliveries/tracking/{id}/cache", "tracking", "_tracking"),
    ("GET", "/api/deliveries/tracking/{transporter}/{number}", "tracking", "_tracking_number"),
    ("GET", "/api/deliveries/tracking/{id}", "tracking", "_tracking"),
    ("GET", "/api/deliveries/validateInvoiceNo/{transporter}/{numbers}", "validate", "_validate"),
    ("GET", "/api/deliveries/webhooks", "webhooks", "_webhooks"),
    ("GET", "/api/deliveries/webhooks/{id}", "webhooks", "_webhooks_one"),
    ("DELETE", "/api/deliveries/cancel", "cancel", "_cancel"),
    ("GET", "/api/deliveries/{ids}", "deliveries", "_lookup"),
    ("PUT", "/api/test/changeStatus/{id}/{status}", "test", "_change_status"),
)
_CONTROL = ("print", "never_pickup", "advance", "clock", "contract", "callbacks")


class GoodsflowSandbox(Sandbox):
    """A local Goodsflow (see the module docstring).

    ``step_seconds``: time between pickup → in transit → out for delivery → delivered;
    ``pickup_after_seconds``: printing → pickup; ``auto_print``: assign waybill numbers at
    registration (demo) instead of when the print page is opened; ``retry_after_seconds``:
    the ``Retry-After`` of 429 answers; ``clock``: a monotonic clock (tests may inject one).
    """

    name = "goodsflow"

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        sender: Center = DEFAULT_SENDER,
        step_seconds: float = 3600.0,
        pickup_after_seconds: float = 4 * 3600.0,
        rates: dict[str, float] | None = None,
        seed: int | None = None,
        auto_print: bool = False,
        retry_after_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_key = api_key
        self.retry_after_seconds = retry_after_seconds
        self.links: dict[str, tuple[list[str], float]] = {}
        super().__init__(rates={"tracking": 10.0, **(rates or {})}, seed=seed)
        self.world = GoodsflowWorld(
            self.ledger,
            sender,
            step_seconds=step_seconds,
            pickup_after_seconds=pickup_after_seconds,
            auto_print=auto_print,
            seed=seed,
            clock=clock,
        )

    # --- Python-level control ----------------------------------------------------------------
    @property
    def sender(self) -> Center:
        return self.world.sender

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's clock forward (parcels advance on the next read)."""
        self.world.advance_clock(seconds)

    def set_contract(self, transporter: str, status: str, center_code: str | None = None) -> None:
        """Set a carrier contract's status (only APPROVED contracts print)."""
        self.world.contracts[(center_code or self.sender.code, transporter)] = status

    def parcel(self, ref: str) -> Parcel:
        """A parcel (synced to now) by service id, unique id or waybill number; KeyError."""
        return self.world.sync(self.world.find(ref))

    def print_waybills(self, ids: list[str] | None = None) -> dict[str, str]:
        """Print labels (assign waybill numbers) for ``ids`` or every unprinted registration;
        returns serviceId → waybill number of the newly printed ones."""
        return self.world.print_waybills(ids)

    def never_pickup(self, ref: str) -> None:
        """The carrier never picks this parcel up (stale-invoice alerts)."""
        self.parcel(ref).never_pickup = True

    def advance(self, ref: str, status: str) -> Parcel:
        """Force a Goodsflow status now (like ``PUT /api/test/changeStatus``); the clock goes
        on from there. Raises ParcelStateError / KeyError."""
        parcel = self.parcel(ref)
        parcel.force(status, self.world.now(), self.world.emit)
        return parcel

    async def push_callbacks(self, url: str) -> int:
        """POST pending events to ``url`` (webhook push, pull-envelope shape). They leave the
        pull queue only when the receiver answers 2xx. Returns how many were delivered."""
        self.world.sync_all()
        batch = self.world.pending[:1000]
        if not batch:
            return 0
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=self._envelope(batch)) as resp:
                if resp.status >= 300:
                    return 0
        del self.world.pending[: len(batch)]
        self.ledger.record("callback.pushed", url, count=len(batch))
        return len(batch)

    def reset(self) -> None:
        super().reset()
        self.links.clear()
        if hasattr(self, "world"):
            self.world.reset()

    # --- envelope, errors, auth --------------------------------------------------------------
    def _envelope(self, data: Any, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "transactionId": uuid.uuid4().hex,
            "success": error is None,
            "data": data,
            "error": error,
            "responseDateTime": format_time(datetime.now(KST)),
        }

    def _ok(self, data: Any, error: dict[str, Any] | None = None) -> web.Response:
        return web.json_response(
            self._envelope(data, error), dumps=lambda o: json.dumps(o, ensure_ascii=False)
        )

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        body = self._envelope(None, {"message": message, "detail": {"code": code}})
        return web.json_response(body, status=status)

    def rate_limited_response(self, endpoint: str) -> web.Response:
        resp = self.error_response(429, "TOO_MANY_REQUESTS", f"too many requests on {endpoint}")
        resp.headers["Retry-After"] = f"{self.retry_after_seconds:g}"
        return resp

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        for method, path, endpoint, handler in _ENDPOINTS:
            self.route(router, method, path, endpoint, self._authed(getattr(self, handler)))
        router.add_get("/invoice-print/public/print/{id}", self._print_page)
        for name in _CONTROL:
            router.add_post(f"/_control/{name}", getattr(self, f"_ctl_{name}"))
        router.add_get("/_control/parcels", self._ctl_parcels)

    def _authed(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            presented = request.headers.get("Authorization", "")
            if presented != self.api_key:
                # echoes the presented key on purpose: clients must redact what they report
                return self.error_response(401, "UNAUTHORIZED", f"invalid API key {presented!r}")
            return await handler(request)

        return wrapped

    async def _items(self, request: web.Request) -> list[Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        items = body.get("items") if isinstance(body, dict) else None
        return items if isinstance(items, list) and items else None

    def _batch(self, answers: list[dict[str, Any]]) -> web.Response:
        ok = sum(1 for a in answers if a["success"])
        return self._ok(
            {
                "totalCnt": len(answers),
                "successCnt": ok,
                "failCnt": len(answers) - ok,
                "items": answers,
            }
        )

    def _find(self, request: web.Request) -> Parcel | None:
        return self.world.by_id(request.match_info["id"], request.query.get("idType") == "uniqueId")

    # --- centers and contracts ---------------------------------------------------------------
    async def _centers(self, request: web.Request) -> web.Response:
        return self._ok([self.world.center_json()])

    async def _center_default(self, request: web.Request) -> web.Response:
        return self._ok(self.world.center_json())

    async def _center(self, request: web.Request) -> web.Response:
        if request.match_info["code"] != self.sender.code:
            return self.error_response(404, "NOT_FOUND", "unknown center")
        return self._ok(self.world.center_json())

    async def _contracts(self, request: web.Request) -> web.Response:
        return self._ok(self.world.contracts_json())

    # --- printing ----------------------------------------------------------------------------
    async def _print_flat(self, request: web.Request) -> web.Response:
        return await self._register_print(request, grouped=False)

    async def _print_grouped(self, request: web.Request) -> web.Response:
        return await self._register_print(request, grouped=True)

    async def _register_print(self, request: web.Request, grouped: bool) -> web.Response:
        items = await self._items(request)
        if items is None:
            return self.error_response(400, "VALIDATION", "a JSON body with items is required")
        return self._batch(
            [self.world.register_print(i, it, grouped) for i, it in enumerate(items)]
        )

    async def _print_uri(self, request: web.Request) -> web.Response:
        try:
            ids = await request.json()
        except ValueError:
            ids = None
        if not isinstance(ids, list):
            return self.error_response(400, "VALIDATION", "a JSON array of ids is required")
        by_unique = request.query.get("idType") == "uniqueId"
        with_printed = request.query.get("includePrinted", "true") != "false"
        printable = [
            p
            for p in self.world.parcels.values()
            if (p.unique_id if by_unique else p.service_id) in ids
            and not p.cancelled
            and p.service_type == "PRINT"
            and (with_printed or p.stage < 0)
        ]
        if len({p.transporter for p in printable}) > 1:
            return self._ok(None, {"message": "one carrier contract per print batch", "detail": {}})
        link, now = uuid.uuid4().hex, self.world.now()
        self.links[link] = ([p.service_id for p in printable], now + 60.0)
        url = f"{self.url}/invoice-print/public/print"
        return self._ok(
            {
                "id": link,
                "url": url,
                "uri": f"{url}/{link}",
                "requestCount": len(ids),
                "printCount": len(printable),
                "expireDateTime": self.world.stamp(now + 60, seconds=False),
            }
        )

    async def _print_page(self, request: web.Request) -> web.Response:
        """Opening the print URI prints the labels (assigns the waybill numbers)."""
        ids, expires = self.links.get(request.match_info["id"], ([], 0.0))
        if self.world.now() > expires:
            return web.json_response({"message": "print link expired or unknown"}, status=410)
        return web.json_response({"printed": self.world.print_waybills(ids) if ids else {}})

    async def _cancel(self, request: web.Request) -> web.Response:
        items = await self._items(request)
        if items is None:
            return self.error_response(400, "VALIDATION", "a JSON body with items is required")
        done, refused = self.world.cancel(items)
        error = {"message": "some items were not cancelled", "detail": refused} if refused else None
        return self._ok(done, error)

    async def _lookup(self, request: web.Request) -> web.Response:
        ids = set(request.match_info["ids"].split(",")[:100])
        by_unique = request.query.get("idType") == "uniqueId"
        rows = [
            self.world.delivery_json(self.world.sync(p))
            for p in self.world.parcels.values()
            if (p.unique_id if by_unique else p.service_id) in ids
        ]
        return self._ok(rows)

    # --- tracking ----------------------------------------------------------------------------
    async def _register_tracking(self, request: web.Request) -> web.Response:
        items = await self._items(request)
        if items is None:
            return self.error_response(400, "VALIDATION", "a JSON body with items is required")
        return self._batch([self.world.register_tracking(i, it) for i, it in enumerate(items)])

    async def _tracking(self, request: web.Request) -> web.Response:
        parcel = self._find(request)
        if parcel is None or parcel.invoice_no is None:
            return self.error_response(404, "NOT_FOUND", "no tracking for this id")
        return self._ok(self.world.trace_json(parcel))

    async def _tracking_number(self, request: web.Request) -> web.Response:
        code, number = request.match_info["transporter"], request.match_info["number"]
        for parcel in self.world.parcels.values():
            if parcel.transporter == code and parcel.invoice_no == number:
                return self._ok(self.world.trace_json(self.world.sync(parcel)))
        return self.error_response(404, "NOT_FOUND", "waybill not registered for tracking")

    async def _change_status(self, request: web.Request) -> web.Response:
        parcel = self._find(request)
        if parcel is None:
            return self.error_response(404, "NOT_FOUND", "unknown serviceId")
        try:
            parcel.force(request.match_info["status"], self.world.now(), self.world.emit)
        except ParcelStateError as exc:
            return self.error_response(409, "CONFLICT", str(exc))
        return self._ok(self.world.trace_json(parcel))

    async def _validate(self, request: web.Request) -> web.Response:
        data = self.world.validation_json(
            request.match_info["transporter"], request.match_info["numbers"]
        )
        if data is None:
            return self.error_response(400, "VALIDATION", "unknown transporter")
        return self._ok(data)

    async def _webhooks(self, request: web.Request) -> web.Response:
        return self._ok(self.world.drain())

    async def _webhooks_one(self, request: web.Request) -> web.Response:
        parcel = self._find(request)
        if parcel is None:
            return self.error_response(404, "NOT_FOUND", "unknown id")
        return self._ok([self.world.event_json(parcel, e) for e in parcel.events])

    # --- /_control ---------------------------------------------------------------------------
    async def _ctl_body(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.can_read_body else {}
        return body if isinstance(body, dict) else {}

    async def _ctl_print(self, request: web.Request) -> web.Response:
        body = await self._ctl_body(request)
        return web.json_response({"printed": self.print_waybills(body.get("ids"))})

    async def _ctl_never_pickup(self, request: web.Request) -> web.Response:
        try:
            self.never_pickup(str((await self._ctl_body(request))["ref"]))
        except KeyError as exc:
            return web.json_response({"ok": False, "error": f"unknown {exc}"}, status=404)
        return web.json_response({"ok": True})

    async def _ctl_advance(self, request: web.Request) -> web.Response:
        body = await self._ctl_body(request)
        try:
            parcel = self.advance(str(body["ref"]), str(body["status"]))
        except (KeyError, ParcelStateError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=409)
        return web.json_response({"ok": True, "status": parcel.last_status})

    async def _ctl_clock(self, request: web.Request) -> web.Response:
        self.advance_clock(float((await self._ctl_body(request)).get("seconds", 0)))
        return web.json_response({"ok": True})

    async def _ctl_contract(self, request: web.Request) -> web.Response:
        body = await self._ctl_body(request)
        self.set_contract(str(body["transporter"]), str(body.get("status", "APPROVED")))
        return web.json_response({"ok": True})

    async def _ctl_callbacks(self, request: web.Request) -> web.Response:
        sent = await self.push_callbacks(str((await self._ctl_body(request))["url"]))
        return web.json_response({"ok": True, "sent": sent})

    async def _ctl_parcels(self, request: web.Request) -> web.Response:
        self.world.sync_all()
        rows = [
            {k: v for k, v in asdict(p).items() if k != "events"} | {"events": len(p.events)}
            for p in self.world.parcels.values()
        ]
        return web.json_response(rows, dumps=lambda o: json.dumps(o, default=str))


async def main(host: str = "127.0.0.1", port: int = 0) -> None:
    """``channelsync sandbox goodsflow``: serve until interrupted (API key from settings)."""
    from channelsync.settings import get_settings

    key = get_settings().goodsflow_api_key.get_secret_value()
    await serve_forever(GoodsflowSandbox(api_key=key), host, port)
