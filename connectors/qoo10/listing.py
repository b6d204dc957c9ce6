"""Ingestion for Qoo10: what changed in a period, and the claim view of given orders.

GetShippingInfo_v3 and GetClaimInfo_V3 have no paging: each search window (at most 90 days,
JST bounds, whole seconds) is answered whole, so a period is read as consecutive windows
(:func:`connectors.qoo10.dates.search_windows`). Mixed into
:class:`~connectors.qoo10.client.Qoo10Client`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.contract import ClaimState
from connectors.qoo10 import codes
from connectors.qoo10.dates import (
    MAX_SEARCH_WINDOW,
    floor_second,
    format_search_datetime,
    search_windows,
)
from connectors.qoo10.fields import text
from connectors.qoo10.mapping import (
    Row,
    claim_changes,
    claim_state,
    listed_claim_state,
    shipping_changes,
)
from topics.changes import ChannelChange

#: How far back (by claim request date) the bulk claim view lists open buyer cancel requests:
#: two search windows (2 x 89 days, two GetClaimInfo_V3 calls per batch). A cancel request can
#: only be made once the estimated ship date is entered (R25), and an order is due for dispatch
#: within days of that (3 business days after payment, EstShipDt at most weeks ahead, qoo10.md
#: §7), so an order still undispatched with a request older than ~6 months is outside any
#: flow the store runs; set ``claim_lookback`` longer (one more call per 89 days) if it is not.
DEFAULT_CLAIM_LOOKBACK = 2 * MAX_SEARCH_WINDOW
#: Up to this many orders, claim_states reads each order's detail (exact shipping status too);
#: above it, the claim list (O(1) calls for the whole batch).
DEFAULT_CLAIM_DETAIL_MAX = 3
#: The bulk claim search ends this far past the local clock (clock skew against QSM's).
CLAIM_SEARCH_MARGIN = timedelta(minutes=10)

#: GetShippingInfo_v3 queries per window: (ShippingStatus, SearchCondition). Blank status covers
#: states 1-3 only (§5.1), so paid orders already dispatched/delivered are read separately.
SHIPPING_QUERIES: tuple[tuple[str, str], ...] = (
    ("", codes.SEARCH_BY_PAYMENT_DATE),
    (codes.ShippingStatus.SHIPPING.value, codes.SEARCH_BY_PAYMENT_DATE),
    (codes.ShippingStatus.DELIVERED.value, codes.SEARCH_BY_PAYMENT_DATE),
    (codes.ShippingStatus.SHIPPING.value, codes.SEARCH_BY_SHIP_DATE),
    (codes.ShippingStatus.DELIVERED.value, codes.SEARCH_BY_DELIVERED_DATE),
)
#: GetClaimInfo_V3 queries per window (all claim states): by request date and by completion date.
CLAIM_QUERIES: tuple[str, ...] = (
    codes.CLAIM_SEARCH_BY_REQUEST_DATE,
    codes.CLAIM_SEARCH_BY_COMPLETION_DATE,
)


def rows_of(result: Any) -> list[Row]:
    """``ResultObject`` as a list of rows (it may be null, one object or an array)."""
    if result is None:
        return []
    if isinstance(result, Mapping):
        return [result]
    if isinstance(result, list):
        return [r for r in result if isinstance(r, Mapping)]
    return []


class ChangeListing:
    """changes_since / claim_states / order_detail over ``qapi``."""

    if TYPE_CHECKING:
        account: str
        max_window: timedelta
        claim_lookback: timedelta
        claim_detail_max: int

        async def qapi(self, method: str, params: Mapping[str, object]) -> Any: ...

    async def order_detail(self, order_no: str) -> Row | None:
        """GetShippingAndClaimInfoByOrderNo_V2: the order's shipping + claim row, None if none."""
        rows = rows_of(await self.qapi(codes.GET_ORDER_DETAIL, {"OrderNo": order_no}))
        return rows[0] if rows else None

    async def changes_since(self, since: datetime, until: datetime) -> list[ChannelChange]:
        """Orders and claims changed in [since, until] (JST search bounds, whole seconds, windows
        of at most ``max_window``; GetShippingInfo_v3 and GetClaimInfo_V3 have no paging, each
        window is answered whole). Sorted by change time; unique by change key within the call;
        a fact may repeat across calls (callers de-duplicate). Raises ConnectorError."""
        found: dict[str, ChannelChange] = {}
        for start, end in search_windows(since, until, self.max_window):
            bounds = (format_search_datetime(start), format_search_datetime(end))
            rows: list[Row] = []
            for status, condition in SHIPPING_QUERIES:
                rows += rows_of(
                    await self.qapi(
                        codes.GET_SHIPPING_INFO,
                        {
                            "ShippingStatus": status,
                            "SearchStartDate": bounds[0],
                            "SearchEndDate": bounds[1],
                            "SearchCondition": condition,
                        },
                    )
                )
            claims: list[Row] = []
            for condition in CLAIM_QUERIES:
                claims += rows_of(
                    await self.qapi(
                        codes.GET_CLAIM_INFO,
                        {
                            "ClaimStat": "",
                            "search_Sdate": bounds[0],
                            "search_Edate": bounds[1],
                            "search_condition": condition,
                        },
                    )
                )
            for change in (
                *shipping_changes(rows, start, end, self.account),
                *claim_changes(claims, start, end, self.account),
            ):
                found.setdefault(change.change_key, change)
        return sorted(found.values(), key=lambda c: (c.changed_at, c.change_key))

    async def claim_states(
        self, unit_ids: Sequence[str], *, exact: bool = False
    ) -> dict[str, ClaimState]:
        """The marketplace's current claim view of the orders ``unit_ids`` (read before a
        dispatch, R29 / R25). Raises ConnectorError (a whole-call failure: no partial answer).

        * With ``exact`` (reconciling sends of unknown outcome) or up to ``claim_detail_max``
          distinct orders (default 3): one
          GetShippingAndClaimInfoByOrderNo_V2 per order — the exact shipping status and current
          claim; an order Qoo10 does not know is left out.
        * More: :meth:`open_cancel_requests` over the last ``claim_lookback`` (default 178
          days, two calls whatever the batch size). Every asked order gets an entry:
          ``open_cancel_request`` = a cancel request is listed for it (exact for R25 within the
          lookback, provided the list is current — the real list's freshness is unknown; the
          sandbox has none unless built with ``lag_seconds``); ``claim_type`` / ``claim_status``
          = cancel / "1" for those, None otherwise (other claims are not read: a cancelled
          order shows no claim and its dispatch is refused by the marketplace, -10004);
          ``status`` = :data:`~connectors.qoo10.mapping.UNREAD_STATUS` (the list has no
          shipping status); ``dispatched`` = True only when a listed row carries a shipping
          date, else False — the caller then sends the dispatch again, which Qoo10 accepts for
          the same invoice (no second effect). Unknown orders are not detected here (their
          dispatch is refused per item).
        """
        wanted = list(dict.fromkeys(unit_ids))
        if exact or len(wanted) <= self.claim_detail_max:
            states: dict[str, ClaimState] = {}
            for unit_id in wanted:
                row = await self.order_detail(unit_id)
                if row is not None:
                    states[unit_id] = claim_state(unit_id, row)
            return states
        until = floor_second(datetime.now(UTC)) + CLAIM_SEARCH_MARGIN
        listed = await self.open_cancel_requests(until - self.claim_lookback, until)
        return {unit_id: listed_claim_state(unit_id, listed.get(unit_id, ())) for unit_id in wanted}

    async def open_cancel_requests(self, since: datetime, until: datetime) -> dict[str, list[Row]]:
        """GetClaimInfo_V3 rows with ClaimStat "cancel requested", by claim request date in
        [since, until] (windows of at most ``max_window``, one call each), per order number.
        Raises ConnectorError."""
        found: dict[str, list[Row]] = {}
        for start, end in search_windows(since, until, self.max_window):
            rows = rows_of(
                await self.qapi(
                    codes.GET_CLAIM_INFO,
                    {
                        "ClaimStat": codes.OPEN_CANCEL_REQUEST_STAT.value,
                        "search_Sdate": format_search_datetime(start),
                        "search_Edate": format_search_datetime(end),
                        "search_condition": codes.CLAIM_SEARCH_BY_REQUEST_DATE,
                    },
                )
            )
            for row in rows:
                found.setdefault(text(row, "orderNo", "OrderNo"), []).append(row)
        return found
