"""Cancels on Qoo10: seller cancel with the buyer message first (R23), refund after dispatch
(R24), and the buyer cancel request decisions (R25).

The operations QAPI does not confirm (buyer message, approve / reject a request, refund after
dispatch) are carried out as :data:`connectors.qoo10.codes.OPERATIONS` says: that table is the one
place to change when the real API is known.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.contract import ItemResult, UnsupportedOperationError
from connectors.errors import ConnectorError
from connectors.qoo10 import codes
from connectors.qoo10.errors import BuyerMessageFailedError, SellerCancelRefusedError
from connectors.qoo10.mapping import Row, order_facts, ordered_quantity
from connectors.qoo10.rules import CancelPath, check_whole_quantity, plan_seller_cancel

log = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 1000  # SellerMemo limit; the message is also kept as the cancel's memo


@dataclass(frozen=True)
class SellerCancelResult:
    order_no: str
    path: CancelPath
    cancel_reason_code: str
    message_sent: bool


def _operation(name: str) -> tuple[str, dict[str, str]]:
    op = codes.OPERATIONS[name]
    if op.method is None:
        raise UnsupportedOperationError(f"qoo10 {name}: {op.note}", code="NO_API")
    return op.method, dict(op.params)


class CancelOperations:
    """Mixed into :class:`~connectors.qoo10.client.Qoo10Client`."""

    if TYPE_CHECKING:

        async def qapi(self, method: str, params: Mapping[str, object]) -> Any: ...

        async def _require_detail(self, order_no: str) -> Row: ...

        async def _each(
            self,
            unit_ids: Sequence[str],
            method: str,
            action: Callable[[str], Awaitable[ItemResult]],
        ) -> list[ItemResult]: ...

    async def send_buyer_message(self, order_no: str, text: str, *, title: str = "") -> None:
        """Send ``text`` to the buyer of ``order_no`` (method per OPERATIONS["buyer_message"]).

        Not idempotent: each call sends one message. Raises ConnectorError (the real QAPI may
        answer UnsupportedOperationError, see codes.SEND_BUYER_MESSAGE)."""
        if not text.strip():
            raise SellerCancelRefusedError("R23", "an empty message cannot be sent to the buyer")
        method, params = _operation("buyer_message")
        await self.qapi(
            method,
            {
                **params,
                "OrderNo": order_no,
                "Title": title or f"Order {order_no}",
                "Message": text[:MAX_MESSAGE_LENGTH],
            },
        )
        log.info("qoo10 buyer message sent for order %s", order_no)

    async def seller_cancel(
        self,
        order_no: str,
        reason: str,
        message: str,
        *,
        quantity: int | None = None,
        message_sent: bool = False,
    ) -> SellerCancelResult:
        """Seller-initiated cancel of one Qoo10 order: message first, then the cancel.

        1. the order's state is read and the plan decided (:func:`rules.plan_seller_cancel`:
           R23 reasons before dispatch, R24 delivery-delay refund after dispatch; a cancelled
           order is an idempotent success and nothing is sent);
        2. ``quantity``, when given, must be the whole ordered quantity (R04);
        3. the buyer message is sent (skipped when ``message_sent``, e.g. on a retry after the
           message already went out); a failure raises :class:`BuyerMessageFailedError` and the
           cancel is NOT sent (R23);
        4. ``Claim.SetCancelProcess`` with the reason code; the message is also the seller memo.

        Raises SellerCancelRefusedError / SplitNotAllowedError (rules), BuyerMessageFailedError,
        ConnectorError (the cancel call itself; -10004 = ConflictError).
        """
        if not message.strip() and not message_sent:
            raise SellerCancelRefusedError(
                "R23", f"a message to the buyer is required before cancelling order {order_no}"
            )
        row = await self._require_detail(order_no)
        plan = plan_seller_cancel(order_no, reason, order_facts(row))
        if quantity is not None:
            check_whole_quantity(order_no, quantity, ordered_quantity(row))
        if plan.path == CancelPath.ALREADY_CANCELED:
            return SellerCancelResult(order_no, plan.path, "", message_sent)
        if not message_sent:
            try:
                await self.send_buyer_message(order_no, message)
            except ConnectorError as exc:
                log.warning("qoo10 order %s: buyer message failed, cancel blocked (R23)", order_no)
                raise BuyerMessageFailedError(order_no, exc) from None
        if plan.path == CancelPath.REFUND_AFTER_DISPATCH:
            method, params = _operation("refund_after_dispatch")
        else:
            method, params = codes.SET_CANCEL_PROCESS, {"CancelReason": plan.cancel_reason_code}
        await self.qapi(
            method,
            {
                "ContrNo": order_no,
                **params,
                "SellerMemo": message[:MAX_MESSAGE_LENGTH],
                "returnFeeStat": "",
            },
        )
        log.info("qoo10 order %s cancelled by seller (%s, %s)", order_no, plan.path.value, reason)
        reason_code = params.get("CancelReason", plan.cancel_reason_code)
        return SellerCancelResult(order_no, plan.path, reason_code, True)

    async def cancel(
        self, unit_ids: Sequence[str], reason: str, buyer_message: str | None = None
    ) -> list[ItemResult]:
        """The contract's cancel: :meth:`seller_cancel` per order (message first, R23). A refused
        or failed item is reported (code = rule id or result code); BuyerMessageFailedError
        items carry ``code="R23"`` and ``retryable`` from the message failure."""

        async def one(unit_id: str) -> ItemResult:
            try:
                done = await self.seller_cancel(unit_id, reason, buyer_message or "")
            except BuyerMessageFailedError as exc:
                return ItemResult(
                    unit_id,
                    False,
                    code="R23",
                    message=exc.message,
                    retryable=exc.retryable,
                    detail={"rule": "R23", "cause": exc.cause.as_dict(), "message_sent": False},
                )
            return ItemResult(
                unit_id,
                True,
                detail={"path": done.path.value, "cancel_reason": done.cancel_reason_code},
            )

        return await self._each(unit_ids, codes.SET_CANCEL_PROCESS, one)

    async def approve_cancel(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """Approve the buyer's open cancel request per order (R25), as OPERATIONS["approve_cancel"]
        says (UNVERIFIED on the real QAPI, qoo10.md §5.9). Idempotent: an already cancelled order
        is a success; an order without an open request is refused (code NO_OPEN_REQUEST)."""
        method, params = _operation("approve_cancel")

        async def approve(unit_id: str) -> ItemResult:
            facts = order_facts(await self._require_detail(unit_id))
            if facts.canceled:
                return ItemResult(unit_id, True, message="already cancelled")
            if not facts.open_cancel_request:
                return ItemResult(
                    unit_id,
                    False,
                    "NO_OPEN_REQUEST",
                    f"Qoo10 order {unit_id} has no open buyer cancel request",
                    detail={"rule": "R25"},
                )
            await self.qapi(
                method, {"ContrNo": unit_id, **params, "SellerMemo": "", "returnFeeStat": ""}
            )
            log.info("qoo10 order %s: buyer cancel request approved", unit_id)
            return ItemResult(unit_id, True)

        return await self._each(unit_ids, method, approve)

    async def reject_cancel(self, unit_ids: Sequence[str], reason: str) -> list[ItemResult]:
        """Decline the buyer's cancel request. QAPI has none (qoo10.md §5.9): raises
        UnsupportedOperationError unless OPERATIONS["reject_cancel"] names a method."""
        method, params = _operation("reject_cancel")

        async def reject(unit_id: str) -> ItemResult:
            await self.qapi(method, {"OrderNo": unit_id, **params, "Reason": reason})
            return ItemResult(unit_id, True)

        return await self._each(unit_ids, method, reject)
