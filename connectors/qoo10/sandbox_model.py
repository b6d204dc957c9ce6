"""The Qoo10 sandbox's data: one order line and its claims, and the sandbox's own errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from connectors.qoo10.codes import ClaimCode, ShippingStatus

Answer = tuple[int, str]  # (ResultCode, ResultMsg)


class ActionError(Exception):
    """A buyer / QSM action that is not possible in the order's current state."""


class SearchError(Exception):
    """Bad list-search bounds; ``answer`` is the (ResultCode, ResultMsg) to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.answer: Answer = (code, message)


@dataclass
class ClaimRecord:
    code: ClaimCode
    reason: str
    requested_at: datetime
    completed_at: datetime | None = None
    closed_by: str = ""  # buyer | seller | qsm


@dataclass
class SandboxOrder:
    order_no: str
    pack_no: str
    item_code: str
    sku: str
    title: str
    qty: int
    price: Decimal
    buyer: str
    receiver: str
    phone: str
    zip_code: str
    address1: str
    address2: str
    payment_method: str
    ordered_at: datetime
    paid_at: datetime | None
    status: ShippingStatus
    est_ship_date: date | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    decided_at: datetime | None = None
    carrier: str = ""
    tracking_no: str = ""
    claims: list[ClaimRecord] = field(default_factory=list)

    @property
    def claim(self) -> ClaimRecord | None:
        return self.claims[-1] if self.claims else None

    @property
    def open_cancel_request(self) -> bool:
        return self.claim is not None and self.claim.code == ClaimCode.CANCEL_REQUESTED

    @property
    def canceled(self) -> bool:
        return self.claim is not None and self.claim.code in (
            ClaimCode.CANCELED,
            ClaimCode.CANCELLING,
            ClaimCode.UNPAID_CANCELED,
        )

    @property
    def closed(self) -> bool:
        """Cancelled or refunded: no further dispatch / cancel."""
        return self.canceled or (self.claim is not None and self.claim.code == ClaimCode.RETURNED)
