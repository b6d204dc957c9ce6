"""Claim writes after dispatch: returns (R14) and exchanges. One request per product order.

Result semantics are those of :mod:`connectors.naverpay.transport`: one :class:`ItemResult` per
product order; local argument errors raise ``ValidationError`` before any call.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from connectors.contract import DispatchItem, ItemResult
from connectors.errors import ValidationError
from connectors.naverpay import endpoints as ep
from connectors.naverpay.mapping import DELIVERY_METHOD_BY_KIND, naver_carrier_code
from connectors.naverpay.transport import NaverTransport

Json = dict[str, Any]

#: Collect method of a seller-requested return (R16 conversion): Naver's designated courier.
DEFAULT_COLLECT_METHOD = "RETURN_DESIGNATED"


class NaverClaimOps(NaverTransport):
    """Return and exchange operations (the API's ``claim/return/*`` and ``claim/exchange/*``)."""

    # --- writes: returns (R14) -----------------------------------------------------------------
    async def return_request(
        self,
        unit_ids: Sequence[str],
        reason: str,
        *,
        detail: str = "",
        collect_method: str = DEFAULT_COLLECT_METHOD,
    ) -> list[ItemResult]:
        """Seller-initiated return of dispatched product orders (whole quantity)."""
        if reason not in ep.RETURN_REASONS:
            raise ValidationError(f"naverpay return reason {reason!r} not allowed", code="4000")
        body: Json = {"returnReason": reason, "collectDeliveryMethod": collect_method}
        if detail:
            body["returnDetailedReason"] = detail[:500]
        return await self._per_id("return_request", unit_ids, lambda _u: body)

    async def return_hold(
        self,
        unit_ids: Sequence[str],
        reason: str = "RETURN_DELIVERYFEE",
        fee: Decimal | int | str | None = None,
        detail: str | None = None,
    ) -> list[ItemResult]:
        """R14: hold returns (반품보류) for a fee. ``reason`` is ``holdbackClassType``."""
        body = _holdback_body(reason, fee, detail, "Return")
        return await self._per_id("return_holdback", unit_ids, lambda _u: body)

    async def return_hold_release(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """R14: release the hold (Naver resets the held fee)."""
        return await self._per_id("return_holdback_release", unit_ids)

    async def return_approve(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """Complete returns (refund). Allowed while held when the fee is deducted (R14)."""
        return await self._per_id("return_approve", unit_ids)

    async def return_reject(self, unit_ids: Sequence[str], reason: str) -> list[ItemResult]:
        if not reason.strip():
            raise ValidationError("naverpay return reject needs a reason", code="4000")
        return await self._per_id(
            "return_reject", unit_ids, lambda _u: {"rejectReturnReason": reason[:500]}
        )

    # --- writes: exchanges -----------------------------------------------------------------------
    async def exchange_collect_approve(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """Confirm the exchanged goods were collected (``COLLECT_DONE``)."""
        return await self._per_id("exchange_collect_approve", unit_ids)

    async def exchange_redeliver(self, items: Sequence[DispatchItem]) -> list[ItemResult]:
        """Re-ship exchanged product orders (one call each)."""
        by_unit = {i.unit_id: i for i in items}

        def body(unit: str) -> Json:
            item = by_unit[unit]
            payload: Json = {"reDeliveryMethod": DELIVERY_METHOD_BY_KIND[item.kind]}
            if payload["reDeliveryMethod"] == "DELIVERY":
                payload["reDeliveryCompany"] = naver_carrier_code(item.carrier)
                payload["reDeliveryTrackingNumber"] = item.tracking_number
            return payload

        return await self._per_id("exchange_dispatch", list(by_unit), body)

    async def exchange_reject(self, unit_ids: Sequence[str], reason: str) -> list[ItemResult]:
        if not reason.strip():
            raise ValidationError("naverpay exchange reject needs a reason", code="4000")
        return await self._per_id(
            "exchange_reject", unit_ids, lambda _u: {"rejectExchangeReason": reason[:500]}
        )

    async def exchange_hold(
        self,
        unit_ids: Sequence[str],
        reason: str = "EXCHANGE_DELIVERYFEE",
        fee: Decimal | int | str | None = None,
        detail: str | None = None,
    ) -> list[ItemResult]:
        body = _holdback_body(reason, fee, detail, "Exchange")
        return await self._per_id("exchange_holdback", unit_ids, lambda _u: body)

    async def exchange_hold_release(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        return await self._per_id("exchange_holdback_release", unit_ids)


def _holdback_body(
    reason: str, fee: Decimal | int | str | None, detail: str | None, kind: str
) -> Json:
    """Hold bodies differ only by the ``Return`` / ``Exchange`` infix (spec §5.1)."""
    if reason not in ep.HOLDBACK_CLASSES:
        raise ValidationError(
            f"naverpay holdbackClassType {reason!r} not in {sorted(ep.HOLDBACK_CLASSES)}",
            code="4000",
        )
    amount = int(Decimal(str(fee))) if fee not in (None, "") else None
    if amount is not None and amount < 0:
        raise ValidationError("a hold fee cannot be negative", code="4000")
    text = detail or (f"{kind.lower()} fee {amount} won" if amount is not None else reason)
    body: Json = {"holdbackClassType": reason, f"holdback{kind}DetailReason": text[:500]}
    if amount is not None:
        body[f"extra{kind}FeeAmount"] = amount
    return body
