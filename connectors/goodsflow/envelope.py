"""Reading Goodsflow answers: the JSON envelope, item errors, batching (goodsflow.md §1).

Envelope: ``{transactionId, success, data, error: {message, detail}, responseDateTime}``.
:func:`read_envelope` turns an HTTP answer into the envelope or a connector error:

* non-2xx → :func:`connectors.base.status_error` (429/5xx retryable with ``Retry-After``,
  401/403 AuthenticationError, 409 ConflictError, other 4xx ValidationError);
* 2xx with ``success: false`` → ValidationError (unless the caller reads item answers);
* 2xx without a JSON envelope → RetryableError (a proxy page, a truncated answer).

Only HTTP 429 is documented (tracking reads); other statuses are mapped generically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx

from connectors.base import parse_retry_after, status_error
from connectors.errors import RetryableError, ValidationError
from connectors.goodsflow.mapping import transporter_code
from store.carriers import Carrier, UnknownCarrierCodeError

T = TypeVar("T")

#: Lookups and number checks take at most 100 ids (OAS); registrations are batched alike.
MAX_BATCH = 100
_DUPLICATE_MARKERS = ("duplicate", "중복", "already")


def chunks(values: Sequence[T], size: int = MAX_BATCH) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def error_text(error: Any) -> tuple[str, dict[str, Any]]:
    """``(message, detail)`` of an ``error`` object (detail keyed by field or id)."""
    if isinstance(error, dict):
        detail = error.get("detail")
        return str(error.get("message") or "refused"), detail if isinstance(detail, dict) else {}
    return (str(error) if error else "refused"), {}


def carrier_code_or_none(carrier: Carrier) -> str | None:
    """Goodsflow's transporter code for ``carrier``; ``None`` when Goodsflow has none."""
    try:
        return transporter_code(carrier)
    except UnknownCarrierCodeError:
        return None


def is_duplicate(message: str, detail: dict[str, Any]) -> bool:
    """Whether an item refusal means "this uniqueId / waybill is already registered".
    The exact wording is not documented (goodsflow.md §9): matched loosely here, in one place."""
    text = (message + " " + " ".join(f"{k} {v}" for k, v in detail.items())).lower()
    return any(marker in text for marker in _DUPLICATE_MARKERS)


def read_envelope(
    endpoint: str, resp: httpx.Response, allow_failure: bool, redact: Callable[[str], str]
) -> dict[str, Any]:
    """The envelope of ``resp``, or the connector error it means (module docstring).
    Every message passes through ``redact``."""
    try:
        env = resp.json()
    except ValueError:
        env = None
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if not isinstance(env, dict):
        if resp.status_code >= 400:
            raise status_error(
                resp.status_code,
                redact(f"{endpoint}: HTTP {resp.status_code} {resp.text[:200]}"),
                retry_after=retry_after,
            )
        raise RetryableError(f"{endpoint}: unreadable answer (HTTP {resp.status_code})")
    trace = env.get("transactionId")
    message, detail = error_text(env.get("error"))
    code = str(detail["code"]) if detail.get("code") else None
    if resp.status_code >= 400:
        raise status_error(
            resp.status_code,
            redact(f"{endpoint}: {message}"),
            code=code,
            trace_id=str(trace) if trace else None,
            retry_after=retry_after,
        )
    if not env.get("success") and not allow_failure:
        raise ValidationError(
            redact(f"{endpoint}: {message} {detail or ''}".strip()),
            code=code,
            trace_id=str(trace) if trace else None,
            status=resp.status_code,
        )
    return env
