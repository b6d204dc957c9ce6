"""Tracking rules: R06 as pure code, monotonic tracking states, stale-invoice detection.

Promises:

* :func:`decide` never moves a line backwards and never skips a step (R01): a delivered scan on
  a ``READY_TO_SHIP`` line (pickup scan missed) moves it through ``SHIPPING`` to ``DELIVERED``.
  Only the ``READY_TO_SHIP → SHIPPING`` move asks for a dispatch push, so replaying the same
  scans (duplicates, out of order) never yields a second dispatch.
* :func:`merge_state` is the invoice's tracking state after a scan: it only moves forward.
* :func:`stale_invoices` lists invoices that have had no carrier scan for ``after`` since
  they were issued (never-picked-up parcels), ignoring deleted and R28 free-form invoices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from store.domain import PICKUP_OR_LATER, InvoiceKind, LineStatus, TrackingState

#: Order of the carrier-neutral states; EXCEPTION is handled apart (see merge_state).
_RANK: dict[TrackingState, int] = {
    TrackingState.NONE: 0,
    TrackingState.PICKED_UP: 1,
    TrackingState.IN_TRANSIT: 2,
    TrackingState.OUT_FOR_DELIVERY: 3,
    TrackingState.DELIVERED: 4,
}


@dataclass(frozen=True)
class TrackingDecision:
    """What one scan does to one line.

    ``new_statuses`` are the steps to apply in order (empty: nothing to do); ``dispatch`` asks
    the caller to push the dispatch to the marketplace (R06); ``reason`` says why, for the log.
    """

    new_statuses: tuple[LineStatus, ...]
    dispatch: bool
    reason: str
    rule: str = "R06"

    @property
    def changes(self) -> bool:
        return bool(self.new_statuses)


def _nothing(reason: str) -> TrackingDecision:
    return TrackingDecision((), False, reason)


def decide(line_status: LineStatus, invoice_valid: bool, scan: TrackingState) -> TrackingDecision:
    """R06: the effect of a tracking ``scan`` on a line in ``line_status`` whose invoice is
    (or is not) valid under the carrier's rules (R18)."""
    if scan not in PICKUP_OR_LATER:
        return _nothing(f"{scan} is not a carrier scan of the parcel")
    if line_status is LineStatus.READY_TO_SHIP:
        if not invoice_valid:
            return _nothing("pickup scan ignored: the invoice is not valid (R18)")
        if scan is TrackingState.DELIVERED:
            return TrackingDecision(
                (LineStatus.SHIPPING, LineStatus.DELIVERED),
                True,
                "delivered scan before any pickup scan: ship then deliver",
            )
        return TrackingDecision((LineStatus.SHIPPING,), True, f"{scan} scan: the carrier has it")
    if line_status is LineStatus.SHIPPING:
        if scan is TrackingState.DELIVERED:
            return TrackingDecision((LineStatus.DELIVERED,), False, "delivered scan")
        return _nothing(f"{scan} scan: line already SHIPPING")
    return _nothing(f"{scan} scan does not move a line in {line_status}")


def merge_state(current: TrackingState, scan: TrackingState) -> TrackingState:
    """The invoice's tracking state after ``scan``: forward only.

    EXCEPTION (returned, undeliverable) replaces any state but DELIVERED; a later forward scan
    replaces EXCEPTION (the carrier resumed). NONE never replaces anything.
    """
    if scan is TrackingState.NONE:
        return current
    if scan is TrackingState.EXCEPTION:
        return current if current is TrackingState.DELIVERED else scan
    if current is TrackingState.EXCEPTION:
        return scan
    return scan if _RANK[scan] > _RANK[current] else current


class TrackedInvoice(Protocol):
    """What :func:`stale_invoices` reads (the store's ``Invoice`` row satisfies it)."""

    @property
    def issued_at(self) -> datetime: ...

    @property
    def last_scan_at(self) -> datetime | None: ...

    @property
    def tracking_state(self) -> str: ...


T = TypeVar("T", bound=TrackedInvoice)


def _aware(value: datetime) -> datetime:
    """Naive datetimes (SQLite) are UTC in the store."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def is_stale(invoice: TrackedInvoice, now: datetime, after: timedelta | float) -> bool:
    """True when ``invoice`` has had no carrier scan for ``after`` since it was issued."""
    if getattr(invoice, "deleted_at", None) is not None:
        return False
    kind = getattr(invoice, "kind", InvoiceKind.PARCEL)
    if (
        str(kind) in (InvoiceKind.QUICK, InvoiceKind.VISIT_PICKUP)
        or str(getattr(invoice, "carrier", "")) == "ETC"
    ):
        return False  # R28: free-form invoices are not tracked
    if invoice.last_scan_at is not None:
        return False
    if TrackingState(invoice.tracking_state) in PICKUP_OR_LATER:
        return False
    window = after if isinstance(after, timedelta) else timedelta(seconds=after)
    return _aware(now) - _aware(invoice.issued_at) >= window


def stale_invoices(invoices: Iterable[T], now: datetime, after: timedelta | float) -> list[T]:
    """The invoices with no carrier scan ``after`` (a duration or seconds) since issue, in
    input order. Pure: reads only the given attributes."""
    return [inv for inv in invoices if is_stale(inv, now, after)]
