"""State of the Naver Pay simulator: product orders, claims, feed records (plain data).

See :mod:`connectors.naverpay.simulator` for the behaviour built on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.naverpay.dates import format_dt, from_epoch
from connectors.naverpay.mapping import FINISHED_CLAIM_STATUSES

DAY_MS = 86_400_000
#: Naver codes outside store.carriers' crosswalk that the sandbox still accepts (spec §5.8).
OTHER_CARRIER_CODES = frozenset(
    {
        "REGISTPOST",
        "GENERALPOST",
        "CVSNET",
        "CUPARCEL",
        "KOREXG",
        "HLCGLOBAL",
        "DHL",
        "FEDEX",
        "UPS",
        "TNT",
        "USPS",
        "PANTOS",
        "NONGHYUP",
        "SEBANG",
        "CHUNIL",
        "HDEXP",
        "KUNYOUNG",
        "TEAMFRESH",
        "VROONG",
        "TODAYPICKUP",
    }
)
MAX_DELAY_DAYS = 90  # assumption: how far a dispatch may be delayed


class SimError(ValueError):
    """A buyer/system event the current state does not allow."""


class Refusal(Exception):
    """A per-item refusal of a seller write (Naver code + message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class SimClaim:
    claim_id: str
    claim_type: str  # CANCEL | RETURN | EXCHANGE
    status: str
    requested_at: int
    reason: str
    detail: str = ""
    channel: str = "BUYER"
    pre_status: str = "PAYED"
    quantity: int = 1
    holdback: str | None = None  # HOLDBACK | RELEASED
    holdback_class: str | None = None
    holdback_detail: str = ""
    holdback_at: int | None = None
    released_at: int | None = None
    fee: int = 0
    collected_at: int | None = None
    completed_at: int | None = None
    redelivery: dict[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.status not in FINISHED_CLAIM_STATUSES


@dataclass
class SimProductOrder:
    product_order_id: str
    order_id: str
    name: str
    option: str
    sku: str
    quantity: int
    unit_price: int
    amount: int
    address: dict[str, Any]
    status: str = "PAYED"
    place_status: str = "NOT_YET"
    placed_at: int | None = None
    address_changed: bool = False
    shipping_due: int = 0
    delay_reason: str | None = None
    delay_detail: str | None = None
    delivery: dict[str, Any] | None = None
    decided_at: int | None = None
    claim: SimClaim | None = None
    completed: list[SimClaim] = field(default_factory=list)

    def open_claim(self) -> SimClaim | None:
        return self.claim if self.claim is not None and self.claim.open else None


@dataclass
class SimOrder:
    order_id: str
    ordered_at: int
    paid_at: int | None
    payment_means: str
    orderer_name: str
    orderer_tel: str
    mileage: int
    product_order_ids: list[str]
    total: int = 0  # sum of the product orders' payment amounts
    indexed_at: int = 0  # from then on the condition query finds the order (all lines at once)


@dataclass(frozen=True)
class FeedRecord:
    order_id: str
    product_order_id: str
    type: str
    changed_at: int
    visible_at: int
    status: str
    claim_type: str | None
    claim_status: str | None
    address_changed: bool

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "orderId": self.order_id,
            "productOrderId": self.product_order_id,
            "lastChangedType": self.type,
            "lastChangedDate": ms_text(self.changed_at),
            "productOrderStatus": self.status,
            "receiverAddressChanged": self.address_changed,
        }
        if self.claim_type:  # keys absent when there is no claim (spec §3.2)
            item["claimType"] = self.claim_type
            item["claimStatus"] = self.claim_status
        return item


def ms_text(ms: int | None) -> str | None:
    return None if ms is None else format_dt(from_epoch(ms / 1000))


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def naver_shipping_address(address: dict[str, Any]) -> dict[str, Any]:
    """Our Address fields (name, phone, zip_code, line1, line2) → Naver ``shippingAddress``."""
    return {
        "addressType": "DOMESTIC",
        "name": address.get("name", "Buyer"),
        "tel1": address.get("phone", "010-0000-0000"),
        "tel2": "",
        "zipCode": address.get("zip_code", "00000"),
        "baseAddress": address.get("line1", "Seoul"),
        "detailedAddress": address.get("line2", ""),
        "city": "",
        "state": "",
        "country": "KOR",
        "isRoadNameAddress": True,
    }
