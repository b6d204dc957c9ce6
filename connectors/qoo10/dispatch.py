"""Dispatch on Qoo10: carrier + tracking number per order, sent in bulk (SetSendingInfoBulk).

Mixed into :class:`~connectors.qoo10.client.Qoo10Client`. One :meth:`DispatchOperations.dispatch`
call goes through three phases, each answering for the items it stops:

1. **precheck** (no call): the carrier has a Qoo10 name (``CARRIER``), the tracking number is
   1-50 characters (``TRACKING``);
2. **reads** (optional): the ordered quantity of the orders in ``quantities`` (one detail read
   each, R04 → ``R04``), the claim view of the others (:meth:`claim_states`: per order for a
   few, O(1) list calls for a batch) when claims are checked (R25 → ``R25``);
3. **send**: SetSendingInfoBulk in chunks of ``max_dispatch_batch`` orders (500 =
   :data:`codes.MAX_BULK_ROWS`, the most one call takes), one result per order read from the
   answer rows (``bulk_dispatch=False``: one SetSendingInfo per order).

Outcome per item: ``ok`` only for result code 0 on the order's own answer row. A refusal code →
the code's error class (``retryable`` for a retryable code, ``detail["rule"]`` from the code
table, e.g. -10004 → R25). An order the answer has no readable row for → ``UNKNOWN_OUTCOME``,
retryable (a repeat with the same invoice is accepted by Qoo10 with no second effect). A whole-call
failure of a chunk → every item of the chunk carries that error; once a RetryableError has
exhausted its retries, every item not yet sent is ``NOT_ATTEMPTED`` (retryable).
AuthenticationError (credentials refused after one renewal) is raised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.contract import ClaimState, DispatchItem, ItemResult
from connectors.errors import AuthenticationError, ConnectorError, RetryableError
from connectors.qoo10 import codes
from connectors.qoo10.listing import rows_of
from connectors.qoo10.mapping import (
    Row,
    bulk_outcomes,
    order_facts,
    ordered_quantity,
    state_facts,
)
from connectors.qoo10.rules import OrderFacts, check_dispatch_allowed, check_whole_quantity
from store.carriers import UnknownCarrierCodeError, channel_code
from store.domain import Channel
from store.errors import RuleViolation

log = logging.getLogger(__name__)

MAX_TRACKING_LENGTH = 50
NOT_ATTEMPTED = "NOT_ATTEMPTED"
UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"


@dataclass(frozen=True)
class _Send:
    """One order ready to send: its Qoo10 order number, carrier name and tracking number."""

    unit_id: str
    corp: str
    tracking: str

    def form_row(self) -> dict[str, str]:
        return {"OrderNo": self.unit_id, "ShippingCorp": self.corp, "TrackingNo": self.tracking}


def _not_attempted(unit_id: str, outage: RetryableError) -> ItemResult:
    return ItemResult(unit_id, False, NOT_ATTEMPTED, outage.message, retryable=True)


class DispatchOperations:
    """``dispatch`` over ``qapi`` (see the module docstring)."""

    if TYPE_CHECKING:
        check_claims_before_dispatch: bool
        bulk_dispatch: bool
        max_dispatch_batch: int

        async def qapi(self, method: str, params: Mapping[str, object]) -> Any: ...

        async def _require_detail(self, order_no: str) -> Row: ...

        async def claim_states(
            self, unit_ids: Sequence[str], *, exact: bool = False
        ) -> dict[str, ClaimState]: ...

        def _failed(
            self, unit_id: str, exc: Exception, method: str | None = None
        ) -> ItemResult: ...

        def redact(self, text: str) -> str: ...

    async def dispatch(
        self,
        items: Sequence[DispatchItem],
        *,
        check_claims: bool | None = None,
        quantities: Mapping[str, int] | None = None,
    ) -> list[ItemResult]:
        """Register carrier + tracking number per order (order → state 4, "shipping").

        One result per distinct unit, in the order of first appearance (a unit given twice is
        sent once, with its last item). ``check_claims`` (default: the client's
        ``check_claims_before_dispatch``) reads the claim view first and refuses an order with
        an open buyer cancel request or a cancelled one (R25) without sending it;
        ``quantities`` (unit → quantity shipped) must equal the ordered quantity (R04: never a
        partial dispatch). Idempotent: the same invoice again is accepted by the marketplace
        with no second effect; another invoice replaces it. An order Qoo10 does not know is
        ``NOT_FOUND`` when its detail was read (a few orders checked, or ``quantities``), else
        the marketplace's own per-row refusal (-10001). See the module docstring for the
        outcome of each item. Raises AuthenticationError.
        """
        check = self.check_claims_before_dispatch if check_claims is None else check_claims
        by_unit = {item.unit_id: item for item in items}
        results: dict[str, ItemResult] = {}
        ready: list[_Send] = []
        for unit_id, item in by_unit.items():
            try:
                corp = channel_code(item.carrier, Channel.QOO10.value)
            except UnknownCarrierCodeError as exc:
                results[unit_id] = ItemResult(unit_id, False, "CARRIER", str(exc))
                continue
            tracking = item.tracking_number.strip()
            if not tracking or len(tracking) > MAX_TRACKING_LENGTH:
                results[unit_id] = ItemResult(
                    unit_id, False, "TRACKING", "tracking number empty or > 50"
                )
                continue
            ready.append(_Send(unit_id, corp, tracking))
        outage: RetryableError | None = None
        if check or quantities is not None:
            ready, outage = await self._gate(ready, check, quantities or {}, results)
        if outage is not None:
            results.update({s.unit_id: _not_attempted(s.unit_id, outage) for s in ready})
        elif ready:
            sent = await (self._send_bulk(ready) if self.bulk_dispatch else self._send_each(ready))
            results.update(sent)
            done = sum(1 for s in ready if sent[s.unit_id].ok)
            log.info("qoo10 dispatch: %d of %d orders accepted", done, len(ready))
        return [results[unit_id] for unit_id in by_unit]

    async def _gate(
        self,
        ready: list[_Send],
        check: bool,
        quantities: Mapping[str, int],
        results: dict[str, ItemResult],
    ) -> tuple[list[_Send], RetryableError | None]:
        """Phase 2: the reads and the R04 / R25 refusals. Refused items go into ``results``;
        answers the items still to send, and the outage that stopped the reads (if any: then
        the answered items are not to be sent)."""
        facts: dict[str, OrderFacts] = {}
        for send in ready:
            if send.unit_id not in quantities:
                continue
            try:
                row = await self._require_detail(send.unit_id)
                check_whole_quantity(send.unit_id, quantities[send.unit_id], ordered_quantity(row))
                facts[send.unit_id] = order_facts(row)
            except AuthenticationError:
                raise
            except RetryableError as exc:
                results[send.unit_id] = self._failed(send.unit_id, exc, codes.GET_ORDER_DETAIL)
                return [s for s in ready if s.unit_id not in results], exc
            except (ConnectorError, RuleViolation) as exc:
                results[send.unit_id] = self._failed(send.unit_id, exc, codes.GET_ORDER_DETAIL)
        if check:
            unread = [
                s.unit_id for s in ready if s.unit_id not in results and s.unit_id not in facts
            ]
            if unread:
                try:
                    states = await self.claim_states(unread)
                except AuthenticationError:
                    raise
                except RetryableError as exc:
                    return [s for s in ready if s.unit_id not in results], exc
                except ConnectorError as exc:
                    results.update({u: self._failed(u, exc) for u in unread})
                    states = {}
                for unit_id in unread:
                    state = states.get(unit_id)
                    if state is not None:
                        facts[unit_id] = state_facts(state)
                    elif unit_id not in results:
                        results[unit_id] = ItemResult(
                            unit_id, False, "NOT_FOUND", f"Qoo10 order {unit_id} not found"
                        )
            for unit_id, fact in facts.items():
                try:
                    check_dispatch_allowed(unit_id, fact)
                except RuleViolation as exc:
                    results[unit_id] = self._failed(unit_id, exc)
        return [s for s in ready if s.unit_id not in results], None

    async def _send_bulk(self, ready: Sequence[_Send]) -> dict[str, ItemResult]:
        """Phase 3: SetSendingInfoBulk per chunk of ``max_dispatch_batch`` orders (at most
        MAX_BULK_ROWS)."""
        method = codes.SET_SENDING_INFO_BULK
        out: dict[str, ItemResult] = {}
        outage: RetryableError | None = None
        size = max(1, min(self.max_dispatch_batch, codes.MAX_BULK_ROWS))
        for chunk in (ready[i : i + size] for i in range(0, len(ready), size)):
            if outage is not None:
                out.update({s.unit_id: _not_attempted(s.unit_id, outage) for s in chunk})
                continue
            payload = json.dumps(
                [s.form_row() for s in chunk], ensure_ascii=False, separators=(",", ":")
            )
            try:
                answer = await self.qapi(method, {codes.SENDING_INFO_JSON_FIELD: payload})
            except AuthenticationError:
                raise
            except ConnectorError as exc:
                if isinstance(exc, RetryableError):
                    outage = exc
                # a whole-call refusal says nothing per order: never an "already done" success
                out.update({s.unit_id: self._failed(s.unit_id, exc) for s in chunk})
                continue
            outcomes = bulk_outcomes(rows_of(answer))
            for send in chunk:
                out[send.unit_id] = self._outcome(send.unit_id, outcomes.get(send.unit_id))
        return out

    def _outcome(self, unit_id: str, outcome: tuple[int | None, str] | None) -> ItemResult:
        """One order's result from its bulk answer row (None: no row)."""
        method = codes.SET_SENDING_INFO_BULK
        code, message = outcome if outcome is not None else (None, "")
        if code is None:
            why = "no answer row" if outcome is None else "unreadable answer row"
            return ItemResult(
                unit_id,
                False,
                UNKNOWN_OUTCOME,
                f"{method}: {why} for order {unit_id}; outcome unknown, send again",
                retryable=True,
            )
        if code == codes.OK:
            return ItemResult(unit_id, True)
        return self._failed(unit_id, codes.classify(method, code, self.redact(message)), method)

    async def _send_each(self, ready: Sequence[_Send]) -> dict[str, ItemResult]:
        """Phase 3 without bulk: one SetSendingInfo per order."""
        method = codes.SET_SENDING_INFO
        out: dict[str, ItemResult] = {}
        outage: RetryableError | None = None
        for send in ready:
            if outage is not None:
                out[send.unit_id] = _not_attempted(send.unit_id, outage)
                continue
            try:
                await self.qapi(method, send.form_row())
                out[send.unit_id] = ItemResult(send.unit_id, True)
            except AuthenticationError:
                raise
            except ConnectorError as exc:
                if isinstance(exc, RetryableError):
                    outage = exc
                out[send.unit_id] = self._failed(send.unit_id, exc, method)
        return out
