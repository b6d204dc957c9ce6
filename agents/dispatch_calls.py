"""One ledger op batch → the connector method that executes it (used by the dispatcher)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from connectors.contract import DispatchItem, ItemResult, MarketplaceConnector
from connectors.errors import PermanentError
from store import outbound as ob
from store.carriers import Carrier
from store.domain import Channel, InvoiceKind
from store.models import ChannelOp


async def call(
    connector: MarketplaceConnector, action: str, ops: list[ChannelOp]
) -> list[ItemResult]:
    p = ops[0].payload
    if action == ob.DISPATCH:
        items = [
            DispatchItem(
                unit_id=op.payload["unit_id"],
                carrier=Carrier(op.payload["carrier"]),
                tracking_number=op.payload["tracking_number"],
                dispatched_at=datetime.fromisoformat(op.payload["dispatched_at"]),
                kind=InvoiceKind(op.payload.get("invoice_kind", "parcel")),
            )
            for op in ops
        ]
        if connector.channel == Channel.QOO10:  # the claim gate above already read the claims
            return list(await connector.dispatch(items, check_claims=False))  # type: ignore[call-arg]
        return await connector.dispatch(items)
    units = p.get("unit_ids", [])
    if action == ob.REQUEST_WAYBILL:
        return await _request_waybills(connector, ops)
    if action == ob.CONFIRM:
        if p.get("estimated_ship_date") and connector.channel == Channel.QOO10:
            due = date.fromisoformat(p["estimated_ship_date"])
            return list(await connector.confirm_orders(units, estimated_ship_date=due))  # type: ignore[call-arg]
        return await connector.confirm_orders(units)
    if action == ob.DELAY:
        return await connector.delay_dispatch(
            units, date.fromisoformat(p["due_date"]), p["reason"], p["detail"]
        )
    if action == ob.CANCEL:
        return await connector.cancel(units, p["reason"], p.get("buyer_message"))
    if action == ob.APPROVE_CANCEL:
        return await connector.approve_cancel(units)
    if action == ob.REJECT_CANCEL:
        return await connector.reject_cancel(units, p.get("reason", ""))
    aliases = {
        ob.RETURN_HOLD: ("return_hold", "hold_return"),
        ob.RETURN_HOLD_RELEASE: ("return_hold_release", "release_return_hold"),
        ob.RETURN_APPROVE: ("return_approve", "approve_return"),
        ob.BUYER_MESSAGE: ("send_buyer_message",),
    }
    fn = next(
        (getattr(connector, n) for n in aliases.get(action, (action,)) if hasattr(connector, n)),
        None,
    )
    if fn is None:
        raise PermanentError(f"{connector.channel} has no operation {action}", code="UNSUPPORTED")
    if action == ob.RETURN_HOLD:
        result: list[ItemResult] = await fn(
            units, p.get("reason", "RETURN_DELIVERYFEE"), p.get("fee")
        )
        return result
    if action == ob.BUYER_MESSAGE:
        await fn(p["order_no"], p["text"])
        return [ItemResult(u, True) for u in units or [p["order_no"]]]
    result = await fn(units)
    return list(result)


async def _request_waybills(connector: Any, ops: list[ChannelOp]) -> list[ItemResult]:
    from connectors.goodsflow.models import WaybillItem
    from connectors.goodsflow.models import WaybillRequest as GfRequest
    from topics.commands import Address

    out: list[ItemResult] = []
    for op in ops:
        p = op.payload
        req = GfRequest(
            unique_id=p["unique_id"],
            carrier=Carrier(p["carrier"]),
            receiver=Address.model_validate(p["receiver"]),
            items=[WaybillItem(**item) for item in p["items"]],
        )
        if p.get("replaces"):  # R12 reprint: cancel the old-address waybill, issue the new one
            res = await connector.reissue_waybill(p["replaces"], req)
        else:
            (res,) = await connector.request_waybills([req])
        detail = {"service_id": res.service_id, "invoice_no": res.invoice_no}
        out.append(
            ItemResult(
                p["unit_ids"][0],
                res.ok,
                None if res.ok else "WAYBILL_REFUSED",
                res.message,
                detail=detail,
            )
        )
    return out
