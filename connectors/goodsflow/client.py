"""Goodsflow Platform Open API client: waybills (송장출력), cancel/re-issue, tracking.

Shape (goodsflow.md §1, §3): hosts ``https://api.goodsflow.io`` / ``https://test-api.goodsflow.io``,
header ``Authorization: <raw key>`` (no ``Bearer``), JSON envelope ``{transactionId, success,
data, error: {message, detail}, responseDateTime}``; batch registrations answer per item.

Errors: HTTP statuses map through :func:`connectors.base.status_error` (429/5xx/timeouts retried
with backoff, ``Retry-After`` honoured; 401/403 → AuthenticationError; 409 → ConflictError; other
4xx → ValidationError). A 200 answer with ``success: false`` → ValidationError carrying
Goodsflow's message. Item-level refusals are results (``ok=False``), not exceptions.
The API key is sent on every request and redacted from every error text and log line.

Idempotency: every waybill / tracking registration carries the caller's ``unique_id``; when a
retried registration hits "duplicate uniqueId" the client reads the existing registration back
and returns it (``duplicate=True``), so a lost answer never yields a second waybill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from connectors.base import (
    DEFAULT_RETRY_POLICY,
    BaseHttpClient,
    CallObserver,
    RateLimiter,
    RetryPolicy,
)
from connectors.errors import ConflictError, ValidationError
from connectors.goodsflow import mapping
from connectors.goodsflow.envelope import (
    carrier_code_or_none,
    chunks,
    error_text,
    is_duplicate,
    read_envelope,
)
from connectors.goodsflow.models import (
    CancelReason,
    CancelResult,
    Center,
    IdType,
    NumberCheck,
    PrintLink,
    TrackingEvent,
    TrackingInfo,
    TrackingRegistration,
    Waybill,
    WaybillRequest,
    WaybillResult,
)
from store.carriers import Carrier

T = TypeVar("T")

PRODUCTION_URL = "https://api.goodsflow.io"
TEST_URL = "https://test-api.goodsflow.io"
#: "Tracking API: more than 10 calls per second → 429" (OAS).
TRACKING_RATE_LIMIT = 10.0


class GoodsflowClient(BaseHttpClient):
    """Async client of the Goodsflow Platform Open API (see the module docstring)."""

    connector_name = "goodsflow"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_per_second: float = 10.0,
        rates: dict[str, float] | None = None,
        center_code: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        limits = {"tracking": min(rate_per_second, TRACKING_RATE_LIMIT), **(rates or {})}
        super().__init__(
            base_url,
            timeout=timeout,
            retry=retry,
            limiter=RateLimiter(rate_per_second, limits),
            secrets=[api_key],
            transport=transport,
            observer=observer,
        )
        self.http.headers["Authorization"] = api_key
        self.center_code = center_code
        self._center: Center | None = None

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> GoodsflowClient:
        """Build from :class:`channelsync.settings.Settings` (``GOODSFLOW_*`` variables)."""
        return cls(
            settings.goodsflow_api_url,
            settings.goodsflow_api_key.get_secret_value(),
            timeout=settings.http_timeout_seconds,
            retry=RetryPolicy.from_settings(settings),
            rate_per_second=settings.goodsflow_rate_per_second,
            center_code=getattr(settings, "goodsflow_center_code", None),
            **kw,
        )

    # --- transport ---------------------------------------------------------------------------
    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        allow_failure: bool = False,
    ) -> dict[str, Any]:
        """One logical call; returns the envelope. Raises connector errors (module docstring);
        with ``allow_failure`` a 200 ``success: false`` envelope is returned, not raised."""

        async def send() -> dict[str, Any]:
            kw: dict[str, Any] = {"params": params}
            if body is not None:
                kw["json"] = body
            resp = await self.http.request(method, path, **kw)
            return read_envelope(endpoint, resp, allow_failure, self.redact)

        return await self.call(endpoint, send)

    # --- centers (R27) -----------------------------------------------------------------------
    async def get_center(self, code: str | None = None) -> Center:
        """The sender center whose address goes on every waybill (R27): ``code``, else the
        configured ``center_code``, else Goodsflow's default center. Cached."""
        code = code or self.center_code
        if self._center is not None and (code is None or self._center.code == code):
            return self._center
        path = f"/api/centers/{code}" if code else "/api/centers/default"
        env = await self._call("centers", "GET", path)
        center = mapping.center_from(env.get("data") or {})
        if not center.code:
            raise ValidationError(f"centers: no sender center {code or '(default)'}")
        self._center = center
        return center

    # --- waybills ----------------------------------------------------------------------------
    async def request_waybills(self, requests: Sequence[WaybillRequest]) -> list[WaybillResult]:
        """Register waybills to print, one result per request in order.

        The sender is always the contract's center (R27); callers refuse lines on hold or not
        ``READY_TO_SHIP`` first (:func:`store.invoices.check_waybill_allowed`, R05/R12). The
        waybill number is usually assigned only when the label is printed: read it back with
        :meth:`get_waybills` or from a ``PRINTED`` event. A carrier Goodsflow has no code for
        is refused locally (``ok=False``) without a call."""
        center = await self.get_center()
        now = datetime.now(UTC)
        return await self._register(
            "print",
            "/api/deliveries/shipping/print/deliveryItems",
            [(r.unique_id, r.carrier, r) for r in requests],
            lambda r: mapping.print_item(r, center, now),
            {"contractType": "USER"},
        )

    async def _register(
        self,
        endpoint: str,
        path: str,
        entries: Sequence[tuple[str, Carrier, T]],
        build: Callable[[T], dict[str, Any]],
        extra: dict[str, Any],
    ) -> list[WaybillResult]:
        """Batch registration with per-item answers, in input order."""
        results: dict[int, WaybillResult] = {}
        sendable: list[tuple[int, str, T]] = []
        for idx, (unique_id, carrier, entry) in enumerate(entries):
            if carrier_code_or_none(carrier) is None:
                results[idx] = WaybillResult(
                    unique_id, False, message=f"{carrier} has no Goodsflow transporter code"
                )
            else:
                sendable.append((idx, unique_id, entry))
        for chunk in chunks(sendable):
            body = {"requestId": chunk[0][1], **extra, "items": [build(e) for _, _, e in chunk]}
            env = await self._call(endpoint, "POST", path, body=body, allow_failure=True)
            answers = await self._item_results(env, [uid for _, uid, _ in chunk])
            results.update(zip((idx for idx, _, _ in chunk), answers, strict=True))
        return [results[i] for i in range(len(entries))]

    async def _item_results(
        self, env: dict[str, Any], unique_ids: list[str]
    ) -> list[WaybillResult]:
        """One result per unique id; "duplicate" refusals are read back in one lookup (a
        cancelled registration is not handed back: its unique id must not be reused)."""
        data = env.get("data") if isinstance(env.get("data"), dict) else {}
        rows = {int(r.get("idx", i)): r for i, r in enumerate((data or {}).get("items") or [])}
        if not rows and not env.get("success"):
            message, detail = error_text(env.get("error"))
            raise ValidationError(self.redact(f"register: {message} {detail}"))
        results: list[WaybillResult] = []
        duplicates: list[str] = []
        for idx, unique_id in enumerate(unique_ids):
            row = rows.get(idx) or {}
            item = row.get("data") or {}
            if row.get("success"):
                service_id = str(item.get("serviceId") or "") or None
                invoice_no = item.get("invoiceNo") or None
                results.append(WaybillResult(unique_id, True, service_id, invoice_no))
                continue
            message, detail = error_text(row.get("error") or "no answer for this item")
            if is_duplicate(message, detail):
                duplicates.append(unique_id)
            results.append(
                WaybillResult(unique_id, False, message=self.redact(message), detail=detail)
            )
        if duplicates:
            existing = {
                wb.unique_id: wb for wb in await self.get_waybills(duplicates, IdType.UNIQUE_ID)
            }
            for n, result in enumerate(results):
                wb = existing.get(result.unique_id)
                if not result.ok and wb is not None and wb.status != "CANCELED":
                    results[n] = WaybillResult(
                        result.unique_id, True, wb.service_id, wb.invoice_no, duplicate=True
                    )
        return results

    async def print_link(
        self, service_ids: Sequence[str], *, include_printed: bool = True
    ) -> PrintLink:
        """The one-minute label page for waybills of ONE carrier contract; cancelled and
        unknown ids are skipped by Goodsflow (``print_count`` < ``request_count``)."""
        env = await self._call(
            "print_uri",
            "PUT",
            "/api/deliveries/shipping/print-uri",
            params={
                "idType": IdType.SERVICE_ID.value,
                "includePrinted": "true" if include_printed else "false",
            },
            body=list(service_ids),
        )
        data = env.get("data") or {}
        return PrintLink(
            uri=str(data.get("uri") or ""),
            request_count=int(data.get("requestCount") or 0),
            print_count=int(data.get("printCount") or 0),
            expires=str(data.get("expireDateTime") or ""),
        )

    async def get_waybills(
        self, ids: Sequence[str], id_type: IdType = IdType.SERVICE_ID
    ) -> list[Waybill]:
        """Registrations by service id or unique id (unknown ids are absent)."""
        found: list[Waybill] = []
        for chunk in chunks(ids):
            env = await self._call(
                "deliveries",
                "GET",
                f"/api/deliveries/{','.join(chunk)}",
                params={"idType": id_type.value},
            )
            found.extend(
                mapping.waybill_from(r) for r in env.get("data") or [] if isinstance(r, dict)
            )
        return found

    async def cancel_waybills(
        self,
        service_ids: Sequence[str],
        reason: CancelReason = CancelReason.RE_RECEIVED,
        contents: str = "",
    ) -> list[CancelResult]:
        """Cancel registrations (only possible before the carrier's pickup). One result per id;
        a refused id is ``ok=False`` with Goodsflow's reason. Cancelling twice is harmless."""
        results: list[CancelResult] = []
        for chunk in chunks(service_ids):
            items = [
                {
                    "id": sid,
                    "reasonType": reason.value,
                    **({"contents": contents} if contents else {}),
                }
                for sid in chunk
            ]
            env = await self._call(
                "cancel",
                "DELETE",
                "/api/deliveries/cancel",
                body={"items": items},
                allow_failure=True,
            )
            done = {
                str(r.get("serviceId")): r for r in env.get("data") or [] if isinstance(r, dict)
            }
            message, detail = error_text(env.get("error"))
            for sid in chunk:
                if sid in done:
                    results.append(CancelResult(sid, True, done[sid].get("uniqueId")))
                else:
                    results.append(CancelResult(sid, False, message=str(detail.get(sid, message))))
        return results

    async def reissue_waybill(self, service_id: str, request: WaybillRequest) -> WaybillResult:
        """Cancel ``service_id`` and register ``request`` instead (address changed after
        printing, R12). ``request.unique_id`` must be new (e.g. the line id + ``:r1``).
        Raises :class:`ConflictError` when the old waybill can no longer be cancelled
        (picked up): nothing new is registered then."""
        cancelled = await self.cancel_waybills([service_id], CancelReason.RE_RECEIVED)
        if not cancelled[0].ok:
            raise ConflictError(
                self.redact(f"cancel {service_id}: {cancelled[0].message}"), code="CANCEL_REFUSED"
            )
        return (await self.request_waybills([request]))[0]

    # --- tracking ----------------------------------------------------------------------------
    async def register_tracking(
        self, registrations: Sequence[TrackingRegistration]
    ) -> list[WaybillResult]:
        """Ask Goodsflow to track waybills printed elsewhere (one result per registration;
        an already registered ``unique_id`` is read back, not duplicated)."""
        return await self._register(
            "tracking_register",
            "/api/deliveries/tracking",
            [(r.unique_id, r.carrier, r) for r in registrations],
            lambda r: {
                "uniqueId": r.unique_id,
                "transporter": mapping.transporter_code(r.carrier),
                "invoiceNo": r.invoice_no,
                "itemName": r.item_name,
            },
            {},
        )

    async def get_tracking(
        self, id_: str, id_type: IdType = IdType.SERVICE_ID, *, live: bool = False
    ) -> TrackingInfo:
        """The parcel's tracking (``live`` asks the carrier; default: Goodsflow's store)."""
        path = f"/api/deliveries/tracking/{id_}" + ("" if live else "/cache")
        env = await self._call("tracking", "GET", path, params={"idType": id_type.value})
        return mapping.tracking_from(env.get("data") or {})

    async def track_number(self, carrier: Carrier, invoice_no: str) -> TrackingInfo:
        """Tracking by carrier + waybill number (the number must be registered first)."""
        code = mapping.transporter_code(carrier)
        env = await self._call("tracking", "GET", f"/api/deliveries/tracking/{code}/{invoice_no}")
        return mapping.tracking_from(env.get("data") or {})

    async def pull_events(self) -> list[TrackingEvent]:
        """Undelivered webhook events (≤ 1000 per call). Goodsflow marks them consumed on
        read, so the caller must persist them before acknowledging anything downstream."""
        env = await self._call("webhooks", "GET", "/api/deliveries/webhooks")
        return [mapping.event_from(r) for r in env.get("data") or [] if isinstance(r, dict)]

    async def events_for(
        self, id_: str, id_type: IdType = IdType.SERVICE_ID
    ) -> list[TrackingEvent]:
        """Webhook events of one registration (re-readable)."""
        env = await self._call(
            "webhooks", "GET", f"/api/deliveries/webhooks/{id_}", params={"idType": id_type.value}
        )
        return [mapping.event_from(r) for r in env.get("data") or [] if isinstance(r, dict)]

    async def check_numbers(self, carrier: Carrier, numbers: Sequence[str]) -> list[NumberCheck]:
        """Goodsflow's own waybill syntax check (may differ from the carriers' rules)."""
        code = mapping.transporter_code(carrier)
        checks: list[NumberCheck] = []
        for chunk in chunks(numbers):
            env = await self._call(
                "validate", "GET", f"/api/deliveries/validateInvoiceNo/{code}/{','.join(chunk)}"
            )
            checks.extend(mapping.number_checks_from(env.get("data") or {}))
        return checks

    async def force_status(self, service_id: str, status: str) -> TrackingInfo:
        """Test server only (``PUT /api/test/changeStatus``): force a delivery status."""
        env = await self._call("test", "PUT", f"/api/test/changeStatus/{service_id}/{status}")
        return mapping.tracking_from(env.get("data") or {})
