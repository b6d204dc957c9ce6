"""Ingestion for Qoo10: what changed in a period, and the claim view of given orders.

GetShippingInfo_v3 and GetClaimInfo_V3 have no paging: each search window (at most 90 days,
JST bounds, whole seconds) is answered whole, so a period is read as consecutive windows
(:func:`connectors.qoo10.dates.search_windows`). Mixed into
:class:`~connectors.qoo10.client.Qoo10Client`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.contract import ClaimState
from connectors.qoo10 import codes
from connectors.qoo10.dates import format_search_datetime, search_windows
from connectors.qoo10.mapping import Row, claim_changes, claim_state, shipping_changes
from topics.changes import ChannelChange

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

    async def claim_states(self, unit_ids: Sequence[str]) -> dict[str, ClaimState]:
        """The current shipping/claim view per order (R29); unknown orders are left out."""
        states: dict[str, ClaimState] = {}
        for unit_id in unit_ids:
            row = await self.order_detail(unit_id)
            if row is not None:
                states[unit_id] = claim_state(unit_id, row)
        return states
