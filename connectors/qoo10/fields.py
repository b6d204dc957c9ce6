"""Reading Qoo10 answer rows: case-insensitive field access, status codes, carriers, payment.

Pure helpers used by :mod:`connectors.qoo10.mapping`. Statuses arrive as ``"<label>(<code>)"``,
a bare code or a bare label (qoo10.md §6.1); all three are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.qoo10.codes import CLAIM_LABELS, SHIPPING_STATUS_LABELS, ClaimCode, ShippingStatus
from store.carriers import Carrier, UnknownCarrierCodeError, from_channel_code
from store.domain import Channel, PaymentMethod

Row = Mapping[str, Any]

_PAREN_CODE = re.compile(r"\((\d+)\)\s*$")


def field(row: Row, *names: str) -> Any:
    """The first non-empty value among ``names``, compared without case; None when absent."""
    lowered = {k.lower(): v for k, v in row.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value not in (None, ""):
            return value
    return None


def text(row: Row, *names: str) -> str:
    value = field(row, *names)
    return "" if value is None else str(value).strip()


def decimal(row: Row, *names: str) -> Decimal | None:
    value = field(row, *names)
    if value is None:
        return None
    try:
        return Decimal(str(value).replace(",", ""))
    except InvalidOperation:
        return None


def _code(value: object, labels: Mapping[Any, str]) -> str | None:
    """A status code from ``"<label>(<n>)"``, a bare number, or a bare known label."""
    if value is None:
        return None
    raw = str(value).strip()
    if not raw:
        return None
    match = _PAREN_CODE.search(raw)
    if match:
        return match.group(1)
    if raw.lstrip("-").isdigit():
        return str(int(raw))
    for code, label in labels.items():
        if raw == label:
            return str(code)
    return None


def shipping_status(value: object) -> ShippingStatus | None:
    code = _code(value, SHIPPING_STATUS_LABELS)
    try:
        return ShippingStatus(code) if code is not None else None
    except ValueError:
        return None


def claim_code(value: object) -> ClaimCode | None:
    code = _code(value, CLAIM_LABELS)
    try:
        return ClaimCode(code) if code is not None else None
    except ValueError:
        return None


def carrier_of(name: str) -> Carrier | None:
    """The carrier behind a Qoo10 ``ShippingCorp`` / ``DeliveryCompany`` name, if known."""
    try:
        return from_channel_code(name, Channel.QOO10.value) if name else None
    except UnknownCarrierCodeError:
        return None


def payment_method(value: str) -> PaymentMethod:
    """Lenient: Qoo10 payment method names are not documented."""
    low = value.lower()
    if "card" in low or "カード" in value:
        return PaymentMethod.CARD
    if any(w in low for w in ("bank", "atm", "transfer", "konbini", "convenience")) or any(
        w in value for w in ("振込", "コンビニ", "銀行")
    ):
        return PaymentMethod.BANK_TRANSFER
    if "point" in low or "ポイント" in value or "qcash" in low:
        return PaymentMethod.POINTS
    return PaymentMethod.OTHER
