"""Qoo10 dates: Japan Standard Time on the wire, aware datetimes everywhere else.

QSM/QAPI dates are JST (UTC+9, no daylight saving; qoo10.md §7, confidence M). Requests take
``yyyyMMdd`` or ``yyyyMMddHHmmss``; responses were seen as ``YYYY-MM-DD HH:MM:SS`` (confidence L),
so :func:`parse_qoo10_datetime` accepts every form seen in public clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

JST = timezone(timedelta(hours=9), "JST")

#: Longest search window one list call accepts (-10003 beyond 90 days; clients loop 89-90 days).
MAX_SEARCH_WINDOW = timedelta(days=89)

_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y%m%d",
)

#: Placeholder dates some .NET back ends emit for "no date".
_EMPTY_YEARS = frozenset({1, 1900})


def to_jst(moment: datetime) -> datetime:
    """``moment`` (aware) in JST; raises ValueError for a naive datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Qoo10 times need a time zone")
    return moment.astimezone(JST)


def format_search_datetime(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in JST (whole seconds, floored)."""
    return to_jst(moment).strftime("%Y%m%d%H%M%S")


def format_date(day: date) -> str:
    """``yyyyMMdd`` (``EstShipDt``)."""
    return day.strftime("%Y%m%d")


def format_response_datetime(moment: datetime) -> str:
    """The response form the sandbox answers with: ``YYYY-MM-DD HH:MM:SS`` JST."""
    return to_jst(moment).strftime("%Y-%m-%d %H:%M:%S")


def parse_qoo10_datetime(value: object) -> datetime | None:
    """An aware JST datetime from a Qoo10 date string, or None for empty/placeholder values.

    Fractional seconds and a trailing offset are tolerated; naive values are read as JST.
    Raises ValueError for a non-empty string in no known form.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if "." in text and text.rsplit(".", 1)[1].isdigit():
        text = text.rsplit(".", 1)[0]
    parsed = _parse(text)
    if parsed.year in _EMPTY_YEARS:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=JST)
    return parsed.astimezone(JST)


def _parse(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"unknown Qoo10 date format: {text!r}")


def parse_search_datetime(value: str, *, end: bool = False) -> datetime:
    """A search bound (8 or 14 digits, JST). An 8-digit ``end`` bound means the end of that day.

    Raises ValueError for any other form (the API answers -10002 "search date error").
    """
    text = value.strip()
    if len(text) == 14 and text.isdigit():
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=JST)
    if len(text) == 8 and text.isdigit():
        day = datetime.strptime(text, "%Y%m%d").replace(tzinfo=JST)
        return day + timedelta(days=1, seconds=-1) if end else day
    raise ValueError(f"search date must be yyyyMMdd or yyyyMMddHHmmss: {value!r}")


def floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def search_windows(
    since: datetime, until: datetime, max_window: timedelta = MAX_SEARCH_WINDOW
) -> Iterator[tuple[datetime, datetime]]:
    """Split [since, until] into consecutive windows no longer than ``max_window``.

    Bounds are whole seconds (``since`` floored) and inclusive, as the API treats them; adjacent
    windows share their boundary second, so a fact at a boundary may be listed twice (callers
    de-duplicate by change key) but never lost. Yields nothing when ``until <= since``.
    """
    if max_window < timedelta(seconds=1):
        raise ValueError("max_window must be at least one second")
    start = floor_second(to_jst(since))
    stop = to_jst(until)
    while start < stop:
        end = min(start + max_window, stop)
        yield start, end
        if end == stop:
            break
        start = floor_second(end)


def today_jst(now: datetime) -> date:
    return to_jst(now).date()
