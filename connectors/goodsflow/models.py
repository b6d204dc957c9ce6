"""Values the Goodsflow client takes and returns (frozen dataclasses, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from store.carriers import Carrier
from store.domain import TrackingState
from topics.commands import Address


class IdType(StrEnum):
    SERVICE_ID = "serviceId"  # Goodsflow's id (20 digits)
    UNIQUE_ID = "uniqueId"  # the caller's id (our idempotency key)


class CancelReason(StrEnum):
    """``reasonType`` of ``DELETE /api/deliveries/cancel`` (goodsflow.md §4.7)."""

    NOT_SEND = "NOT_SEND"
    RE_RECEIVED = "RE_RECEIVED"  # cancelled to be re-issued (address change, R12)
    SENDER_CANCEL = "SENDER_CANCEL"
    PICKUP_DELAY = "PICKUP_DELAY"
    OTHER_SERVICE = "OTHER_SERVICE"
    PICKUP_OTHER = "PICKUP_OTHER"
    ETC = "ETC"


@dataclass(frozen=True)
class Center:
    """A Goodsflow sender center (출고지): the sender address registered with the carrier
    contract (R27). Waybills always carry this address, never the shop profile's."""

    code: str
    name: str
    phone: str
    zip_code: str
    address1: str
    address2: str


@dataclass(frozen=True)
class WaybillItem:
    order_no: str
    name: str
    quantity: int
    price: int
    order_date: datetime | None = None
    code: str | None = None
    option: str | None = None


@dataclass(frozen=True)
class WaybillRequest:
    """One parcel to print. ``unique_id`` is the idempotency key (the line id, or the line id
    plus a re-issue suffix); no sender field exists on purpose (R27)."""

    unique_id: str
    carrier: Carrier
    receiver: Address
    items: Sequence[WaybillItem]
    box_size: str = "B05"
    message: str = ""
    sender_pays: bool = True


@dataclass(frozen=True)
class WaybillResult:
    """Goodsflow's answer for one requested parcel (refusals are results, not exceptions).

    ``duplicate`` is true when the ``unique_id`` had been registered before and the existing
    registration is returned instead of a new one."""

    unique_id: str
    ok: bool
    service_id: str | None = None
    invoice_no: str | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False


@dataclass(frozen=True)
class CancelResult:
    service_id: str
    ok: bool
    unique_id: str | None = None
    message: str = ""


@dataclass(frozen=True)
class PrintLink:
    """The one-minute print page for a batch of waybills (``PUT .../print-uri``)."""

    uri: str
    request_count: int
    print_count: int
    expires: str


@dataclass(frozen=True)
class Waybill:
    """A registration as read back (``GET /api/deliveries/{ids}``)."""

    service_id: str
    unique_id: str | None
    carrier: Carrier | None
    transporter: str
    invoice_no: str | None
    status: str | None
    state: TrackingState | None
    service_type: str | None = None


@dataclass(frozen=True)
class TrackingEvent:
    """One status event (webhook pull/push or a tracking detail row).

    ``state`` is ``None`` for a status code the mapping table does not know (the caller
    dead-letters it instead of guessing); ``raw_status`` is Goodsflow's own code."""

    service_id: str | None
    unique_id: str | None
    carrier: Carrier | None
    transporter: str
    invoice_no: str | None
    seq: int
    raw_status: str
    state: TrackingState | None
    at: datetime | None
    location: str = ""

    @property
    def is_scan(self) -> bool:
        """A carrier scan of the parcel (pickup or later), as R06 means it."""
        return self.state in (
            TrackingState.PICKED_UP,
            TrackingState.IN_TRANSIT,
            TrackingState.OUT_FOR_DELIVERY,
            TrackingState.DELIVERED,
        )


@dataclass(frozen=True)
class TrackingInfo:
    """``GET /api/deliveries/tracking/...``: the parcel's current state and its history."""

    service_id: str | None
    unique_id: str | None
    carrier: Carrier | None
    transporter: str
    invoice_no: str | None
    raw_status: str | None
    state: TrackingState | None
    last_status_at: datetime | None
    picked_up_at: datetime | None
    delivered_at: datetime | None
    events: tuple[TrackingEvent, ...] = ()


@dataclass(frozen=True)
class NumberCheck:
    """``GET /api/deliveries/validateInvoiceNo``: Goodsflow's own syntax check of a number."""

    requested: str
    invoice_no: str
    valid: bool


@dataclass(frozen=True)
class TrackingRegistration:
    """A waybill printed elsewhere (manual invoice) to be tracked by Goodsflow
    (``POST /api/deliveries/tracking``). ``unique_id`` is the idempotency key."""

    unique_id: str
    carrier: Carrier
    invoice_no: str
    item_name: str = ""
