"""Goodsflow webhook push receiver: parse a callback body into tracking events and scans.

Goodsflow pushes status events to a webhook URL registered on its side; the method, body,
signature and retry policy are not documented publicly (goodsflow.md §9). This parser assumes
the body has the shape of the pull endpoint (``GET /api/deliveries/webhooks``): the envelope
``{"data": [event, ...]}``. A bare list of events or a single event object are accepted too,
so a difference found later changes this module only. No signature is checked: the receiver
must sit behind the network controls Goodsflow's contract provides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connectors.goodsflow.mapping import event_from
from connectors.goodsflow.models import TrackingEvent
from topics.tracking import TrackingScan


class CallbackFormatError(ValueError):
    """The callback body is not JSON, or holds no recognisable event."""


def parse_callback(body: bytes | str | Mapping[str, Any] | list[Any]) -> list[TrackingEvent]:
    """The events of one callback body, in the order given. Raises CallbackFormatError."""
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise CallbackFormatError(f"callback body is not JSON: {exc}") from None
    if isinstance(data, Mapping) and "data" in data:
        data = data["data"]
    rows = [data] if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        raise CallbackFormatError("callback body holds no event list")
    events = [event_from(row) for row in rows if isinstance(row, Mapping)]
    if rows and not events:
        raise CallbackFormatError("callback body holds no event objects")
    for event in events:
        if not event.raw_status:
            raise CallbackFormatError("callback event without deliveryStatus")
    return events


def to_scan(event: TrackingEvent) -> TrackingScan | None:
    """The ``tracking.events`` message for an event; ``None`` when it cannot be one (unknown
    carrier or status, no waybill number or time)."""
    if event.carrier is None or event.state is None or not event.invoice_no or event.at is None:
        return None
    return TrackingScan(
        carrier=event.carrier,
        tracking_number=event.invoice_no,
        state=event.state,
        scanned_at=event.at,
        location=event.location,
        raw_code=event.raw_status,
    )
