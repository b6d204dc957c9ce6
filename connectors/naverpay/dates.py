"""Naver Commerce API date-times: ISO-8601 with milliseconds and the KST offset.

Naver sends and expects ``yyyy-MM-dd'T'HH:mm:ss.SSSXXX`` (e.g. ``2022-04-11T15:21:44.000+09:00``,
spec §1). :func:`format_dt` always writes that form (milliseconds even for whole seconds, the
``+09:00`` offset, never ``Z``); :func:`parse_dt` reads it (and tolerates ``Z``), returning an
aware datetime, and raises ``ValueError`` for anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")
ONE_MS = timedelta(milliseconds=1)


def format_dt(value: datetime) -> str:
    """``value`` as Naver writes it; a naive value is refused (ValueError)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: Naver date-times carry an offset")
    return value.astimezone(KST).isoformat(timespec="milliseconds")


def parse_dt(text: str) -> datetime:
    """An aware datetime from a Naver date-time string; ValueError when malformed."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"not a date-time: {text!r}")
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"date-time without offset: {text!r}")
    return value


def parse_opt(text: object) -> datetime | None:
    """:func:`parse_dt` for optional response fields: None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_dt(text)
    except ValueError:
        return None


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def truncate_ms(value: datetime) -> datetime:
    """``value`` without sub-millisecond digits (Naver's resolution)."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def stamp(value: datetime) -> str:
    """A stable, zone-independent text for keys: UTC, milliseconds, ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
