"""The contract every marketplace connector implements (Naver Pay, Qoo10).

Outbound operations take marketplace unit ids (Naver product order ids, Qoo10 order numbers) and
answer one :class:`ItemResult` per unit: marketplaces accept or refuse items individually, and a
refused item is not an exception. Whole-call failures raise :mod:`connectors.errors` errors
(``RetryableError`` → retry later; ``PermanentError`` → record and stop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from connectors.errors import PermanentError
from store.carriers import Carrier
from store.domain import Channel, InvoiceKind
from topics.changes import ChannelChange


class UnsupportedOperationError(PermanentError):
    """The marketplace's API has no such operation."""


@dataclass(frozen=True)
class DispatchItem:
    unit_id: str
    carrier: Carrier
    tracking_number: str
    dispatched_at: datetime
    kind: InvoiceKind = InvoiceKind.PARCEL


@dataclass(frozen=True)
class ItemResult:
    unit_id: str
    ok: bool
    code: str | None = None
    message: str = ""
    retryable: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimState:
    """The marketplace's current claim view of one unit (read before a dispatch, R29)."""

    unit_id: str
    status: str  # the marketplace's own product-order / shipping status
    claim_type: str | None = None
    claim_status: str | None = None
    open_cancel_request: bool = False
    dispatched: bool = False


@runtime_checkable
class MarketplaceConnector(Protocol):
    channel: Channel
    max_dispatch_batch: int

    async def changes_since(self, since: datetime, until: datetime) -> list[ChannelChange]:
        """Every change whose marketplace change time lies in [since, until), paged and split
        into the windows the API allows. May return a fact already returned before (callers
        de-duplicate by ``change_key``)."""
        ...

    async def confirm_orders(self, unit_ids: Sequence[str]) -> list[ItemResult]: ...

    async def dispatch(self, items: Sequence[DispatchItem]) -> list[ItemResult]:
        """Register dispatch for up to ``max_dispatch_batch`` items."""
        ...

    async def delay_dispatch(
        self, unit_ids: Sequence[str], due_date: date, reason: str, detail: str
    ) -> list[ItemResult]: ...

    async def cancel(
        self, unit_ids: Sequence[str], reason: str, buyer_message: str | None = None
    ) -> list[ItemResult]: ...

    async def approve_cancel(self, unit_ids: Sequence[str]) -> list[ItemResult]: ...

    async def reject_cancel(self, unit_ids: Sequence[str], reason: str) -> list[ItemResult]: ...

    async def claim_states(
        self, unit_ids: Sequence[str], *, exact: bool = False
    ) -> dict[str, ClaimState]:
        """The units' claim view before a dispatch (R29/R25). ``exact``: the answer must also
        say whether each unit is already dispatched — the caller is reconciling a send whose
        outcome it does not know (a crash, a timeout) and must not send twice."""
        ...

    async def aclose(self) -> None: ...
