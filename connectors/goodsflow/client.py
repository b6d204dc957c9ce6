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

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.base import (
    DEFAULT_RETRY_POLICY,
    BaseHttpClient,
    CallObserver,
    RateLimiter,
    RetryPolicy,
    parse_retry_after,
    status_error,
)
from connectors.errors import ConflictError, RetryableError, ValidationError
from connectors.goodsflow import mapping
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

log = logging.getLogger(__name__)

PRODUCTION_URL = "https://api.goodsflow.io"
TEST_URL = "https://test-api.goodsflow.io"
#: "Tracking API: more than 10 calls per second → 429" (OAS).
TRACKING_RATE_LIMIT = 10.0
#: Lookups and number checks take at most 100 ids (OAS); registrations are batched alike.
MAX_BATCH = 100
_DUPLICATE_MARKERS = ("duplicate", "중복", "already")


def _chunks(values: Sequence[Any], size: int = MAX_BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _error_text(error: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(error, dict):
        detail = error.get("detail")
        return str(error.get("message") or "refused"), detail if isinstance(detail, dict) else {}
    return (str(error) if error else "refused"), {}


def is_duplicate(message: str, detail: dict[str, Any]) -> bool:
    """Whether an item refusal means "this uniqueId / waybill is already registered".
    The exact wording is not documented (goodsflow.md §9): matched loosely here, in one place."""
    text = (message + " " + " ".join(f"{k} {v}" for k, v in detail.items())).lower()
    return any(marker in text for marker in _DUPLICATE_MARKERS)


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
            retry=RetryPolicy(
                max_attempts=settings.retry_max_attempts,
                backoff_base=settings.retry_backoff_base_seconds,
                backoff_max=settings.retry_backoff_max_seconds,
            ),
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
            return self._envelope(endpoint, resp, allow_failure)

        return await self.call(endpoint, send)

    def _envelope(self, endpoint: str, resp: httpx.Response, allow_failure: bool) -> dict[str, Any]:
        try:
            env = resp.json()
        except ValueError:
            env = None
        if not isinstance(env, dict):
            if resp.status_code >= 400:
                raise status_error(
                    resp.status_code,
                    self.redact(f"{endpoint}: HTTP {resp.status_code} {resp.text[:200]}"),
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                )
            raise RetryableError(f"{endpoint}: unreadable answer (HTTP {resp.status_code})")
        trace = env.get("transactionId")
        message, detail = _error_text(env.get("error"))
        code = str(detail.get("code")) if detail.get("code") else None
        if resp.status_code >= 400:
            raise status_error(
                resp.status_code,
                self.redact(f"{endpoint}: {message}"),
                code=code,
                trace_id=trace,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            )
        if not env.get("success") and not allow_failure:
            raise ValidationError(
                self.redact(f"{endpoint}: {message} {detail or ''}".strip()),
                code=code,
                trace_id=trace,
                status=resp.status_code,
            )
        return env

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
        :meth:`get_waybills` or from a ``PRINTED`` event."""
        center = await self.get_center()
        now = datetime.now(UTC)
        results: list[WaybillResult] = []
        for chunk in _chunks(requests):
            body = {
                "requestId": chunk[0].unique_id,
                "contractType": "USER",
                "items": [mapping.print_item(r, center, now) for r in chunk],
            }
            env = await self._call(
                "print",
                "POST",
                "/api/deliveries/shipping/print/deliveryItems",
                body=body,
                allow_failure=True,
            )
            results.extend(await self._item_results(env, [r.unique_id for r in chunk]))
        return results

    async def _item_results(
        self, env: dict[str, Any], unique_ids: list[str]
    ) -> list[WaybillResult]:
        data = env.get("data") if isinstance(env.get("data"), dict) else {}
        rows = {int(r.get("idx", i)): r for i, r in enumerate((data or {}).get("items") or [])}
        if not rows and not env.get("success"):
            message, detail = _error_text(env.get("error"))
            raise ValidationError(self.redact(f"register: {message} {detail}"))
        results: list[WaybillResult] = []
        for idx, unique_id in enumerate(unique_ids):
            row = rows.get(idx) or {}
            item = row.get("data") or {}
            if row.get("success"):
                results.append(
                    WaybillResult(
                        unique_id,
                        True,
                        str(item.get("serviceId") or "") or None,
                        invoice_no=item.get("invoiceNo") or None,
                    )
                )
                continue
            message, detail = _error_text(row.get("error") or "no answer for this item")
            if is_duplicate(message, detail):
                existing = await self.get_waybills([unique_id], IdType.UNIQUE_ID)
                if existing:
                    wb = existing[0]
                    results.append(
                        WaybillResult(unique_id, True, wb.service_id, wb.invoice_no, duplicate=True)
                    )
                    continue
            results.append(WaybillResult(unique_id, False, message=message, detail=detail))
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
        for chunk in _chunks(ids):
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
        for chunk in _chunks(service_ids):
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
            message, detail = _error_text(env.get("error"))
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
        results: list[WaybillResult] = []
        for chunk in _chunks(registrations):
            body = {
                "requestId": chunk[0].unique_id,
                "items": [
                    {
                        "uniqueId": r.unique_id,
                        "transporter": mapping.transporter_code(r.carrier),
                        "invoiceNo": r.invoice_no,
                        "itemName": r.item_name,
                    }
                    for r in chunk
                ],
            }
            env = await self._call(
                "tracking_register",
                "POST",
                "/api/deliveries/tracking",
                body=body,
                allow_failure=True,
            )
            results.extend(await self._item_results(env, [r.unique_id for r in chunk]))
        return results

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
        for chunk in _chunks(numbers):
            env = await self._call(
                "validate", "GET", f"/api/deliveries/validateInvoiceNo/{code}/{','.join(chunk)}"
            )
            checks.extend(mapping.number_checks_from(env.get("data") or {}))
        return checks

    async def force_status(self, service_id: str, status: str) -> TrackingInfo:
        """Test server only (``PUT /api/test/changeStatus``): force a delivery status."""
        env = await self._call("test", "PUT", f"/api/test/changeStatus/{service_id}/{status}")
        return mapping.tracking_from(env.get("data") or {})
