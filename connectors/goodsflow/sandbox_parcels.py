"""The Goodsflow sandbox's parcel model: registrations, their clock and their status events.

No HTTP here. A printed (or tracking-registered) parcel walks the carrier path
``PICKUP → IN_TRANSIT → DLV_START → COMPLETED``: pickup ``pickup_after`` seconds after printing,
then one stage every ``step`` seconds. Nothing runs in the background: :meth:`Parcel.sync`
computes, from the elapsed time, which stages were reached since the last look and emits one
event per stage with the time it was reached, so reading early or late gives the same history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from store.carriers import Carrier

PATH = ("PRINTED", "PICKUP", "IN_TRANSIT", "DLV_START", "COMPLETED")
FORCEABLE = (
    "PICKUP_FAILED",
    "PICKUP",
    "IN_TRANSIT",
    "DLV_START",
    "DLV_FAILED",
    "COMPLETED",
    "RETURNED",
)  # PUT /api/test/changeStatus

#: (statusName, dlvStatType, dlvStatName) served with each status (simulation; the numeric
#: codes for DLV_START / DLV_FAILED are not documented).
STATUS_LABELS: dict[str, tuple[str, str, str]] = {
    "PRINTED": ("송장출력", "", ""),
    "TRANSFERRED": ("택배사전송", "", ""),
    "PICKUP_FAILED": ("미픽업", "29", "미집하"),
    "PICKUP": ("픽업완료", "30", "집하"),
    "IN_TRANSIT": ("이동중", "50", "배송중"),
    "DLV_START": ("배송출발", "60", "배송출발"),
    "DLV_FAILED": ("미배송", "60", "미배달"),
    "COMPLETED": ("배송완료", "70", "배달완료"),
    "RETURNED": ("반송완료", "99", "반송"),
    "CANCELED": ("취소", "", ""),
}

Emit = Callable[["Parcel", dict[str, Any]], None]


class ParcelStateError(Exception):
    """The parcel cannot do that now (not printed, already picked up, terminal …)."""


@dataclass
class Parcel:
    service_id: str
    unique_id: str
    service_type: str  # PRINT | TRACKING
    carrier: Carrier
    transporter: str
    order_no: str
    item_name: str
    sender: dict[str, str]
    receiver: dict[str, str]
    center_code: str | None
    created_at: float
    invoice_no: str | None = None
    stage: int = -1  # index in PATH; -1 = registered, not printed yet
    anchor: float = 0.0  # clock time the current stage was reached
    never_pickup: bool = False
    pickup_failed_sent: bool = False
    terminal: bool = False
    cancelled: bool = False
    last_status: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0

    @property
    def picked_up(self) -> bool:
        return self.stage >= 1 or self.last_status in ("RETURNED", "DLV_FAILED")

    @property
    def active(self) -> bool:
        return self.stage >= 0 and not self.terminal and not self.cancelled

    def start(self, now: float, emit: Emit, *, printed: bool) -> None:
        """The label is printed (PRINTED event, seq 0) or the number registered for tracking."""
        self.stage, self.anchor = 0, now
        if printed:
            self._event("PRINTED", now, emit, seq=0)

    def sync(self, now: float, pickup_after: float, step: float, emit: Emit) -> None:
        """Emit every stage reached by ``now``; idempotent for the same ``now``."""
        while self.active and self.stage + 1 < len(PATH):
            if self.stage == 0 and self.never_pickup:
                due = self.anchor + pickup_after
                if not self.pickup_failed_sent and now >= due:
                    self.pickup_failed_sent = True
                    self._event("PICKUP_FAILED", due, emit)
                return
            due = self.anchor + (pickup_after if self.stage == 0 else step)
            if now < due:
                return
            self.stage += 1
            self.anchor = due
            self._event(PATH[self.stage], due, emit)
            if self.stage == len(PATH) - 1:
                self.terminal = True

    def force(self, status: str, now: float, emit: Emit) -> None:
        """Put the parcel into ``status`` now (the test server's changeStatus); the clock
        continues from there. Raises ParcelStateError."""
        if status not in FORCEABLE:
            raise ParcelStateError(f"unknown status {status}")
        if self.cancelled or self.stage < 0:
            raise ParcelStateError("parcel is cancelled or not printed yet")
        if status == "RETURNED":
            self.terminal = True
        elif status == "PICKUP_FAILED":
            self.stage, self.anchor = 0, now
        elif status == "DLV_FAILED":
            self.stage, self.anchor = PATH.index("DLV_START"), now
        else:
            self.stage, self.anchor = PATH.index(status), now
            self.never_pickup = False
            self.terminal = status == "COMPLETED"
        self._event(status, now, emit)

    def cancel(self, now: float, emit: Emit) -> None:
        """Cancel before pickup; cancelling twice is a no-op. Raises ParcelStateError."""
        if self.cancelled:
            return
        if self.picked_up:
            raise ParcelStateError("already picked up by the carrier: cannot cancel")
        self.cancelled = True
        self._event("CANCELED", now, emit)

    def _event(self, status: str, at: float, emit: Emit, *, seq: int | None = None) -> None:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.last_status = status
        event = {"seq": seq, "status": status, "at": at}
        self.events.append(event)
        emit(self, event)
