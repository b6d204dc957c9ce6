"""Build the enabled connectors from settings (one place that knows every connector)."""

from __future__ import annotations

from typing import Any

from channelsync.settings import Settings
from connectors.base import CallObserver


def build_marketplaces(settings: Settings, observer: CallObserver | None = None) -> dict[str, Any]:
    """channel name → connector, for every enabled marketplace."""
    out: dict[str, Any] = {}
    if settings.naverpay_enabled:
        from connectors.naverpay.client import NaverPayClient

        out["naverpay"] = NaverPayClient.from_settings(settings)
    if settings.qoo10_enabled:
        from connectors.qoo10.client import Qoo10Client

        out["qoo10"] = Qoo10Client.from_settings(settings)
    for client in out.values():
        if observer is not None:
            client.observer = observer
    return out


def build_goodsflow(settings: Settings, observer: CallObserver | None = None) -> Any:
    if not settings.goodsflow_enabled:
        return None
    from connectors.goodsflow.client import GoodsflowClient

    client = GoodsflowClient.from_settings(settings)
    if observer is not None:
        client.observer = observer
    return client
