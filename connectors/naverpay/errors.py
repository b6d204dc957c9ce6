"""Naver answers → :mod:`connectors.errors` (the tree callers catch is drawn there).

Mapping (spec §6):

=====================================  ==========================================================
HTTP / code                            raised
=====================================  ==========================================================
429 ``GW.RATE_LIMIT`` / ``GW.QUOTA_*``  ``RateLimitedError``; ``retry_after`` from ``Retry-After``,
                                       else 1 / ``GNCP-GW-RateLimit-Replenish-Rate``
5xx, 408 (``GW.PROXY*``, ``GW.BLOCK*``,  ``RetryableError`` (``Retry-After`` honoured)
``GW.TIMEOUT*``)
401 ``GW.AUTHN`` (after one renewal),  ``AuthenticationError``
403 ``GW.IP_NOT_ALLOWED``
400 with 104442 / 104443 / 105306 /    ``ConflictError`` (re-read the remote state)
104417, 409
other 4xx                              ``ValidationError``
=====================================  ==========================================================

Every error carries Naver's ``code``, ``message`` and ``traceId`` (body, else the
``GNCP-GW-Trace-ID`` header). Messages pass through the client's redaction first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from connectors.base import parse_retry_after, status_error
from connectors.errors import ConflictError, ConnectorError, RetryableError
from connectors.naverpay.endpoints import CONFLICT_CODES

TRACE_HEADER = "GNCP-GW-Trace-ID"
RATE_HEADER = "GNCP-GW-RateLimit-Replenish-Rate"
QUOTA_PERIOD_HEADER = "GNCP-GW-Quota-Period"

#: 5xx answers after which a write was certainly not executed (gateway refused it up front):
#: 503 ``GW.BLOCK.*`` (circuit open / maintenance). Other 5xx and timeouts leave a write's
#: outcome unknown.
NOT_EXECUTED_STATUSES = frozenset({429, 503})


def json_body(resp: httpx.Response) -> dict[str, Any]:
    """The JSON object of ``resp``, or ``{}`` when the body is not a JSON object."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def retry_after_hint(headers: httpx.Headers) -> float | None:
    """Seconds to wait before retrying a refused call: ``Retry-After`` when present, else one
    token's worth of the advertised replenish rate. None when nothing is advertised."""
    explicit = parse_retry_after(headers.get("Retry-After"))
    if explicit is not None:
        return explicit
    try:
        rate = float(headers.get(RATE_HEADER, ""))
    except ValueError:
        return None
    return 1.0 / rate if rate > 0 else None


def error_from_response(
    resp: httpx.Response, endpoint: str, *, redact: Callable[[str], str] = lambda s: s
) -> ConnectorError:
    """The connector error for a non-2xx Naver answer (see the module table)."""
    body = json_body(resp)
    code = _text(body.get("code"))
    trace_id = _text(body.get("traceId")) or resp.headers.get(TRACE_HEADER)
    message = _text(body.get("message")) or resp.reason_phrase or "error"
    invalid = body.get("invalidInputs")
    if isinstance(invalid, list) and invalid:
        names = ", ".join(
            str(i.get("name")) for i in invalid if isinstance(i, dict) and i.get("name")
        )
        if names:
            message = f"{message} (invalid: {names})"
    period = resp.headers.get(QUOTA_PERIOD_HEADER)
    if period:
        message = f"{message} (quota period {period})"
    text = redact(f"naverpay {endpoint}: {message}")
    status = resp.status_code
    if status == 400 and code in CONFLICT_CODES:
        return ConflictError(text, code=code, trace_id=trace_id, status=status)
    retry_after = retry_after_hint(resp.headers) if status in (429, 503) else None
    return status_error(status, text, code=code, trace_id=trace_id, retry_after=retry_after)


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


class WriteOutcomeUnknownError(RetryableError):
    """A write timed out or got a 5xx that does not prove it was refused: Naver may or may not
    have executed it. Retryable, but only after re-reading the product order's state."""
