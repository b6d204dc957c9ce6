"""Goodsflow (굿스플로) waybill printing and tracking: client, mapping, callback parser, sandbox.

Public surface::

    GoodsflowClient(base_url, api_key, *, timeout, retry, rate_per_second, rates, center_code)
    GoodsflowClient.from_settings(settings)
    WaybillRequest / WaybillItem / WaybillResult / CancelResult / PrintLink / Waybill
    TrackingRegistration / TrackingEvent / TrackingInfo / NumberCheck / Center
    STATUS_TABLE, map_status            the one Goodsflow status → TrackingState table
    parse_callback, to_scan             webhook push receiver
    check_waybill_allowed               the R05/R12 guard (from store.invoices)

The sandbox lives in :mod:`connectors.goodsflow.sandbox` (imported on demand: aiohttp).
"""

from connectors.goodsflow.callback import CallbackFormatError, parse_callback, to_scan
from connectors.goodsflow.client import GoodsflowClient
from connectors.goodsflow.mapping import STATUS_TABLE, map_status
from connectors.goodsflow.models import (
    CancelReason,
    CancelResult,
    Center,
    IdType,
    NumberCheck,
    PrintLink,
    TrackingEvent,
    TrackingInfo,
    TrackingRegistration,
    Waybill,
    WaybillItem,
    WaybillRequest,
    WaybillResult,
)
from store.invoices import check_waybill_allowed

__all__ = [
    "STATUS_TABLE",
    "CallbackFormatError",
    "CancelReason",
    "CancelResult",
    "Center",
    "GoodsflowClient",
    "IdType",
    "NumberCheck",
    "PrintLink",
    "TrackingEvent",
    "TrackingInfo",
    "TrackingRegistration",
    "Waybill",
    "WaybillItem",
    "WaybillRequest",
    "WaybillResult",
    "check_waybill_allowed",
    "map_status",
    "parse_callback",
    "to_scan",
]
