"""Request checks of the Goodsflow sandbox (field rules from the OAS print/tracking schemas).

Each function returns ``None`` when the item is acceptable, else ``(message, detail)`` in the
shape Goodsflow uses for item errors (``detail`` keyed by field).
"""

from __future__ import annotations

import re
from typing import Any

from store.carriers import Carrier, UnknownCarrierCodeError, from_channel_code
from store.invoices import inspect_invoice

BOX_SIZES = frozenset({"B01", "B02", "B05", "B10", "B20", "B25", "B30"})
PAYMENT_METHODS = frozenset({"SENDER_PAY", "RECEIVER_PAY"})
SENDER_FIELDS = ("fromName", "fromPhoneNo", "fromZipcode", "fromAddress1", "fromAddress2")
_LIMITS = {
    "centerCode": 10,
    "transporter": 20,
    "fromName": 50,
    "fromPhoneNo": 12,
    "fromZipcode": 6,
    "fromAddress1": 100,
    "fromAddress2": 100,
    "toName": 50,
    "toPhoneNo": 12,
    "toZipcode": 6,
    "toAddress1": 100,
    "toAddress2": 100,
    "deliveryMessage": 100,
    "uniqueId": 255,
}
#: Names Goodsflow's validateInvoiceNo normalises to its codes (goodsflow.md §9 example).
TRANSPORTER_ALIASES = {
    "CJ대한통운": "KOREX",
    "CJGLS": "KOREX",
    "대한통운": "KOREX",
    "우체국택배": "EPOST",
    "한진택배": "HANJIN",
    "롯데택배": "LOTTE",
    "HYUNDAI": "LOTTE",
    "로젠택배": "LOGEN",
    "KGB": "LOGEN",
    "일양로지스": "ILYANG",
}
TRANSPORTER_NAMES = {
    "KOREX": "CJ대한통운",
    "EPOST": "우체국택배",
    "HANJIN": "한진택배",
    "LOTTE": "롯데택배",
    "LOGEN": "로젠택배",
    "ILYANG": "일양로지스",
}

Problem = tuple[str, dict[str, str]] | None


def carrier_for(transporter: str) -> tuple[str, Carrier] | None:
    code = TRANSPORTER_ALIASES.get(transporter, transporter)
    try:
        return code, from_channel_code(code, "goodsflow")
    except UnknownCarrierCodeError:
        return None


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return "" if value is None else str(value)


def check_print_item(item: dict[str, Any], grouped: bool) -> Problem:
    """A ``송장출력접수 데이터`` item (``grouped``: the ``/deliveryItems`` variant)."""
    detail: dict[str, str] = {}
    for key in ("centerCode", "transporter", "toName", "toPhoneNo", "toZipcode", "toAddress1"):
        if not _text(item, key):
            detail[key] = "required"
    for key, limit in _LIMITS.items():
        if len(_text(item, key)) > limit:
            detail[key] = f"at most {limit} characters"
    for key in ("toPhoneNo", "fromPhoneNo"):
        if _text(item, key) and not _text(item, key).isdigit():
            detail[key] = "digits only"
    if _text(item, "boxSize") not in BOX_SIZES:
        detail["boxSize"] = "unknown box size"
    if _text(item, "deliveryPaymentMethod") not in PAYMENT_METHODS:
        detail["deliveryPaymentMethod"] = "SENDER_PAY or RECEIVER_PAY"
    given = [k for k in SENDER_FIELDS if _text(item, k)]
    if given and len(given) < len(SENDER_FIELDS) - 1:  # fromAddress2 may be blank
        for key in SENDER_FIELDS:
            if not _text(item, key) and key != "fromAddress2":
                detail[key] = "sender address incomplete"
    if grouped:
        goods = item.get("deliveryItems")
        if not isinstance(goods, list) or not goods:
            detail["deliveryItems"] = "required"
        else:
            for n, good in enumerate(goods):
                if not isinstance(good, dict):
                    detail[f"deliveryItems[{n}]"] = "object expected"
                    continue
                for key in ("orderNo", "orderDate", "name", "quantity", "price"):
                    if good.get(key) in (None, ""):
                        detail[f"deliveryItems[{n}].{key}"] = "required"
    else:
        for key in ("orderNo", "orderDate", "itemName", "itemQuantity", "itemPrice"):
            if item.get(key) in (None, ""):
                detail[key] = "required"
    if detail:
        return "validation error", detail
    return None


def check_tracking_item(item: dict[str, Any]) -> Problem:
    """A ``배송추적 요청 데이터`` item: known carrier and a number passing its rule."""
    found = carrier_for(_text(item, "transporter"))
    if found is None:
        return "validation error", {"transporter": "unknown transporter"}
    number = re.sub(r"[^A-Za-z0-9]", "", _text(item, "invoiceNo"))
    if not number or len(number) > 50:
        return "validation error", {"invoiceNo": "required, at most 50 characters"}
    if not inspect_invoice(found[1], number).valid:
        return "invalid invoice number", {"invoiceNo": "does not follow the carrier's rule"}
    return None
