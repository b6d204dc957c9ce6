"""Windows and pages of the change feed (pure; the client does the HTTP).

``last-changed-statuses`` takes an inclusive ``[lastChangedFrom, lastChangedTo]`` of at most
24 h (spec §3.1; clients use 23 h 59 m to stay clear of the boundary) and pages with
``more.moreFrom`` / ``more.moreSequence`` while keeping ``lastChangedTo`` fixed (§3.4). The
condition query (§4.5) takes the same windows as ``from`` / ``to`` and pages by number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.naverpay.dates import ONE_MS, format_dt, truncate_ms

#: Default window: 23 h 59 m (what production clients use; the API refuses > 24 h).
DEFAULT_WINDOW = timedelta(hours=23, minutes=59)


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive
    end: datetime  # inclusive (Naver's lastChangedTo)


def windows(since: datetime, until: datetime, span: timedelta = DEFAULT_WINDOW) -> list[Window]:
    """Inclusive windows covering ``[since, until)`` at millisecond resolution, each no longer
    than ``span``. Empty when ``until <= since``."""
    if span <= ONE_MS:
        raise ValueError("window span too small")
    if until <= since:
        return []
    start, stop = truncate_ms(since), truncate_ms(until)
    if stop < until:
        stop += ONE_MS  # [since, until) with until not on a ms boundary
    out: list[Window] = []
    while start < stop:
        end = min(start + span, stop) - ONE_MS
        out.append(Window(start, end))
        start = end + ONE_MS
    return out


def first_page_params(window: Window, page_size: int) -> dict[str, str]:
    return {
        "lastChangedFrom": format_dt(window.start),
        "lastChangedTo": format_dt(window.end),
        "limitCount": str(page_size),
    }


def next_page_params(params: Mapping[str, str], more: Mapping[str, Any]) -> dict[str, str]:
    """The request after a page that answered ``more``: same ``lastChangedTo``."""
    nxt = dict(params)
    nxt["lastChangedFrom"] = str(more["moreFrom"])
    nxt["moreSequence"] = str(more["moreSequence"])
    return nxt


def condition_params(
    window: Window, page: int, page_size: int, range_type: str = "PAYED_DATETIME"
) -> dict[str, str]:
    """One page (1-based) of the condition query ``GET …/product-orders`` (spec §4.5) over the
    inclusive ``window`` (≤ 24 h)."""
    return {
        "from": format_dt(window.start),
        "to": format_dt(window.end),
        "rangeType": range_type,
        "pageSize": str(page_size),
        "page": str(page),
    }
