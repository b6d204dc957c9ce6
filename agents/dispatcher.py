"""Executes ledger ops against the marketplaces (the call half of every external effect).

A background task of the worker (not a stream agent: messages are acked once their intent is
committed, so a slow marketplace never stalls a partition). Each round it:

1. selects ops that are PENDING, RETRY-and-due, or SENT-and-stale (crash recovery), oldest first,
   keeping per-order order (an order's later op waits for its earlier open op — S2);
2. re-checks what may have changed since the intent: the hold (R12) and, before a dispatch, the
   marketplace's claim state (R29/R25) — an open cancel request parks the dispatch;
3. commits SENT (attempts + 1), calls the connector (dispatches batched up to the API's limit),
   and commits the outcome with its store effects; emits one result per source event.

A SENT op found at start-up (crash between call and outcome) is reconciled first: a dispatch or
cancel the marketplace already shows is recorded as done without a second call (S1).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from connectors.contract import DispatchItem, ItemResult, MarketplaceConnector
from connectors.errors import ConnectorError, PermanentError, RetryableError
from store import ledger, repo
from store import outbound as ob
from store.apply_changes import channel_of_order
from store.carriers import Carrier
from store.domain import Channel, ClaimStatus, InvoiceKind, LineStatus
from store.ledger import OpState
from store.models import ChannelOp, Claim, Invoice, utcnow
from topics import names
from topics.envelope import Envelope
from topics.results import Outcome

log = logging.getLogger(__name__)

BATCH_ACTIONS = {ob.DISPATCH}


class Dispatcher:
    def __init__(self, runtime: Any, *, round_limit: int = 500, idle_seconds: float = 1.0) -> None:
        self.rt = runtime
        self.round_limit = round_limit
        self.idle_seconds = idle_seconds
        self.wake = asyncio.Event()
        self.rounds = 0

    def nudge(self) -> None:
        self.wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die; the ops stay in the ledger
                log.exception("dispatcher round failed")
                worked = 0
            if not worked:
                try:
                    async with asyncio.timeout(self.idle_seconds):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                self.wake.clear()

    async def run_once(self) -> int:
        """One round; returns how many ops it executed."""
        self.rounds += 1
        async with self.rt.sessions() as session:
            ops = await _ready_ops(session, self.round_limit)
        groups: dict[tuple[str, str], list[ChannelOp]] = defaultdict(list)
        for op in ops:
            groups[(op.channel, op.action)].append(op)
        done = 0
        tasks = []
        for (channel, action), group in groups.items():
            connector = self.rt.connectors.get(channel)
            if connector is None and channel == "goodsflow":
                connector = self.rt.goodsflow
            if connector is None:
                continue
            tasks.append(self._run_group(connector, action, group))
        for n in await asyncio.gather(*tasks):
            done += n
        return done

    async def _run_group(
        self, connector: MarketplaceConnector, action: str, ops: list[ChannelOp]
    ) -> int:
        if action in BATCH_ACTIONS:
            size = max(1, getattr(connector, "max_dispatch_batch", 1))
            # two batches in flight: one waits for its rate-limit token or the marketplace while
            # the other does its store work (dispatch ops of one round are for distinct units)
            gate = asyncio.Semaphore(2)

            async def one(batch: list[ChannelOp]) -> int:
                async with gate:
                    return await self._execute(connector, action, batch)

            batches = [ops[i : i + size] for i in range(0, len(ops), size)]
            return sum(await asyncio.gather(*(one(b) for b in batches)))
        n = 0
        for op in ops:
            n += await self._execute(connector, action, [op])
        return n

    async def _execute(
        self, connector: MarketplaceConnector, action: str, ops: list[ChannelOp]
    ) -> int:
        ids = [op.id for op in ops]
        # 1. re-check and mark SENT
        async with self.rt.sessions() as session:
            _keep = await _preload(session, ops)
            fresh = [await session.get(ChannelOp, i) for i in ids]
            ready: list[ChannelOp] = []
            for op in fresh:
                if op is None or op.state not in (OpState.PENDING, OpState.RETRY, OpState.SENT):
                    continue
                order = await repo.get_order(session, op.order_id)
                if op.action in (ob.DISPATCH, ob.REQUEST_WAYBILL) and order.on_hold:
                    ledger.mark_parked(op, {"rule": "R12", "message": "order on delivery hold"})
                    continue
                ready.append(op)
            await session.commit()
        if not ready:
            return 0
        if action == ob.DISPATCH:
            ready = await self._claim_gate(connector, ready)
            if not ready:
                return 0
        async with self.rt.sessions() as session:
            _keep = await _preload(session, ready)
            for op in ready:
                row = await session.get(ChannelOp, op.id)
                assert row is not None
                ledger.mark_sent(row)
            await session.commit()
        # 2. call
        try:
            results = await _call(connector, action, ready)
        except RetryableError as exc:
            await self._record_error(ready, exc, retryable=True)
            return len(ready)
        except ConnectorError as exc:
            await self._record_error(ready, exc, retryable=False)
            return len(ready)
        # 3. outcome
        await self._record_results(action, ready, results)
        return len(ready)

    async def _claim_gate(
        self, connector: MarketplaceConnector, ops: list[ChannelOp]
    ) -> list[ChannelOp]:
        """R29/R25: read the units' claim state; park dispatches over an open cancel request
        (unless an operator chose to ship anyway); skip units the marketplace shows dispatched."""
        units = [op.payload["unit_id"] for op in ops if not op.payload.get("override_claim")]
        if not units:
            return ops
        try:
            states = await connector.claim_states(units)
        except RetryableError as exc:
            await self._record_error(ops, exc, retryable=True)
            return []
        except ConnectorError as exc:
            await self._record_error(ops, exc, retryable=False)
            return []
        keep: list[ChannelOp] = []
        parked: list[tuple[ChannelOp, str]] = []
        already: list[ChannelOp] = []
        for op in ops:
            st = states.get(op.payload["unit_id"])
            if op.payload.get("override_claim") or st is None:
                keep.append(op)
            elif st.open_cancel_request:
                parked.append((op, st.status))
            elif st.dispatched:
                already.append(op)
            else:
                keep.append(op)
        if parked or already:
            async with self.rt.sessions() as session:
                for op, status in parked:
                    row = await session.get(ChannelOp, op.id)
                    assert row is not None
                    rule = "R25" if row.channel == Channel.QOO10 else "R29"
                    ledger.mark_parked(
                        row, {"rule": rule, "message": f"open buyer cancel request ({status})"}
                    )
                for op in already:
                    row = await session.get(ChannelOp, op.id)
                    assert row is not None
                    ledger.mark_done(
                        row, {"reconciled": "marketplace already shows the unit dispatched"}
                    )
                    await _apply_success(session, row)
                await session.commit()
            for op, _ in parked:
                rule = "R25" if op.channel == Channel.QOO10 else "R29"
                await self._emit(
                    op, Outcome.PARKED, "dispatch parked: open buyer cancel request", rule=rule
                )
            for op in already:
                await self._emit(op, Outcome.SUCCEEDED, "already dispatched on the marketplace")
        return keep

    async def _record_error(
        self, ops: Sequence[ChannelOp], exc: ConnectorError, *, retryable: bool
    ) -> None:
        err = exc.as_dict()
        async with self.rt.sessions() as session:
            _keep = await _preload(session, ops)
            rows = [await session.get(ChannelOp, op.id) for op in ops]
            for row in rows:
                assert row is not None
                if retryable and row.attempts < self.rt.settings.retry_max_attempts * 4:
                    delay = _backoff(row.attempts, getattr(exc, "retry_after", None))
                    ledger.mark_retry(row, err, delay)
                else:
                    ledger.mark_failed(row, err)
            await session.commit()
        for row in rows:
            assert row is not None
            if row.state == OpState.FAILED:
                await self._emit(row, Outcome.FAILED, str(exc), error=err)
                await self.rt.dead_letter_op(row, str(exc))
            else:
                await self._emit(row, Outcome.RETRYING, str(exc), error=err)

    async def _record_results(
        self, action: str, ops: list[ChannelOp], results: list[ItemResult]
    ) -> None:
        by_unit: dict[str, list[ItemResult]] = defaultdict(list)
        for r in results:
            by_unit[r.unit_id].append(r)
        emitted: list[tuple[ChannelOp, Outcome, str, dict[str, Any] | None]] = []
        async with self.rt.sessions() as session:
            _keep = await _preload(session, ops)
            for op in ops:
                row = await session.get(ChannelOp, op.id)
                assert row is not None
                units = _op_units(row)
                mine = [r for u in units for r in by_unit.get(u, [])]
                failed = [r for r in mine if not r.ok]
                if not mine:
                    failed = [
                        ItemResult(u, False, "NO_RESULT", "marketplace returned no result")
                        for u in units
                    ]
                if not failed:
                    ledger.mark_done(row, {"items": [_item(r) for r in mine]})
                    await _apply_success(session, row)
                    emitted.append((row, Outcome.SUCCEEDED, f"{row.action} acknowledged", None))
                elif all(r.retryable for r in failed):
                    err: dict[str, Any] = {"items": [_item(r) for r in failed]}
                    ledger.mark_retry(row, err, _backoff(row.attempts, None))
                    emitted.append((row, Outcome.RETRYING, failed[0].message, err))
                else:
                    err = {
                        "items": [_item(r) for r in failed],
                        "code": failed[0].code,
                        "message": failed[0].message,
                    }
                    ledger.mark_failed(row, err)
                    await _apply_refusal(session, row, failed)
                    emitted.append(
                        (row, Outcome.FAILED, f"{failed[0].code}: {failed[0].message}", err)
                    )
            await session.commit()
        messages = []
        for row, outcome, message, error in emitted:
            rule = "R18" if _is_invoice_refusal(row, error) else None
            messages.append(self._result(row, outcome, message, error=error, rule=rule))
        await self.rt.produce_many(names.SYNC_RESULTS, messages)
        for row, outcome, message, _ in emitted:
            if outcome is Outcome.FAILED:
                await self.rt.dead_letter_op(row, message)

    async def _emit(
        self,
        op: ChannelOp,
        outcome: Outcome,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        rule: str | None = None,
    ) -> None:
        key, value = self._result(op, outcome, message, error=error, rule=rule)
        await self.rt.produce(names.SYNC_RESULTS, key, value)

    def _result(
        self,
        op: ChannelOp,
        outcome: Outcome,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        rule: str | None = None,
    ) -> tuple[str, bytes]:
        source = Envelope(
            event_id=_uuid(op.source_event_id),
            type=f"op.{op.action}",
            occurred_at=datetime.now(UTC),
            order_id=op.order_id,
            channel=channel_of_order(op.order_id),
            payload={},
        )
        detail = {"op_id": op.id, "idempotency_key": op.idempotency_key, "attempts": op.attempts}
        self.rt.observe_op(op, outcome)
        return self.rt.result_message(
            source, outcome, message, rule=rule, error=error, detail=detail
        )


async def _preload(session: Any, ops: Sequence[ChannelOp]) -> list[Any]:
    """Load the ops and their orders (with lines) in two queries, so the per-op
    ``session.get`` / ``repo.get_order`` calls that follow hit the identity map."""
    from sqlalchemy import select

    from store.models import Order

    ids = [op.id for op in ops]
    if not ids:
        return []
    loaded: list[Any] = list(
        (await session.execute(select(ChannelOp).where(ChannelOp.id.in_(ids)))).scalars()
    )
    orders = select(Order).where(Order.id.in_({op.order_id for op in ops}))
    loaded.extend((await session.execute(orders)).scalars())
    return loaded  # the caller keeps it: the identity map holds objects only weakly


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, value)


def _item(r: ItemResult) -> dict[str, Any]:
    return {"unit_id": r.unit_id, "ok": r.ok, "code": r.code, "message": r.message, **r.detail}


def _op_units(op: ChannelOp) -> list[str]:
    if "unit_id" in op.payload:
        return [op.payload["unit_id"]]
    return list(op.payload.get("unit_ids", []))


def _is_invoice_refusal(op: ChannelOp, err: dict[str, Any] | None) -> bool:
    return op.action == ob.DISPATCH and err is not None and "items" in err


def _backoff(attempts: int, retry_after: float | None) -> float:
    wait = random.uniform(0, min(60.0, 0.5 * 2 ** max(0, attempts - 1)))
    return max(wait, retry_after or 0.0)


async def _ready_ops(session: Any, limit: int) -> list[ChannelOp]:
    """Due ops, oldest first, at most one open op per order unless they are dispatches of
    different units (S2: an order's later op waits for its earlier one)."""
    from sqlalchemy import select

    now = utcnow()
    stmt = (
        select(ChannelOp)
        .where(
            ChannelOp.state.in_([OpState.PENDING.value, OpState.RETRY.value, OpState.SENT.value])
        )
        .order_by(ChannelOp.id)
        .limit(limit * 4)
    )
    out: list[ChannelOp] = []
    blocked: set[str] = set()
    for op in (await session.execute(stmt)).scalars():
        due = (
            op.state == OpState.PENDING
            or (
                op.state == OpState.RETRY
                and (op.next_attempt_at is None or op.next_attempt_at <= now)
            )
            or (op.state == OpState.SENT and (now - op.updated_at).total_seconds() > 30)
        )
        if op.order_id in blocked:
            continue
        if not due:
            blocked.add(op.order_id)
            continue
        if op.action != ob.DISPATCH:
            blocked.add(op.order_id)
        out.append(op)
        if len(out) >= limit:
            break
    return out


async def _call(
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


async def _apply_success(session: Any, op: ChannelOp) -> None:
    """Store effects of an acknowledged op."""
    order = await repo.get_order(session, op.order_id)
    lines = [ln for ln in order.lines if ln.id in set(op.payload.get("line_ids", []))]
    source = f"op:{op.idempotency_key}"
    if op.action == ob.REQUEST_WAYBILL:
        item = ((op.response or {}).get("items") or [{}])[0]
        for line in lines:
            for inv in await repo.active_invoices(session, [line.id]):
                if inv.reprint_required:
                    inv.deleted_at = utcnow()  # replaced by the reprint (R12)
            session.add(
                Invoice(
                    order_id=order.id,
                    line_id=line.id,
                    carrier=op.payload["carrier"],
                    tracking_number=item.get("invoice_no") or "",
                    valid=bool(item.get("invoice_no")),
                    waybill_id=item.get("service_id"),
                )
            )
    elif op.action == ob.DISPATCH:
        collapse = op.payload.get("collapse")
        for line in lines:
            if LineStatus(line.status) in (LineStatus.PREPARING, LineStatus.READY_TO_SHIP):
                if LineStatus(line.status) is LineStatus.PREPARING:
                    repo.set_status(session, line, LineStatus.READY_TO_SHIP, source, "R15 collapse")
                repo.set_status(session, line, LineStatus.SHIPPING, source, "dispatched")
            repo.mark_notified(line, LineStatus.SHIPPING)
            line.invoice_rejection = None
            if collapse:
                line.collapse = collapse
    elif op.action in (ob.CANCEL, ob.APPROVE_CANCEL):
        for line in lines:
            repo.set_status(session, line, LineStatus.CANCELED, source, op.action)
        await _set_claims(session, lines, ClaimStatus.COMPLETED)
    elif op.action == ob.REJECT_CANCEL:
        await _set_claims(session, lines, ClaimStatus.REJECTED)
    elif op.action == ob.RETURN_HOLD:
        for line in lines:
            repo.set_status(session, line, LineStatus.RETURN_HELD, source, "R14 return hold")
    elif op.action == ob.RETURN_HOLD_RELEASE:
        for line in lines:
            repo.set_status(
                session, line, LineStatus.RETURN_REQUESTED, source, "R14 hold released, fee reset"
            )
        await _reset_fee(session, lines)
    elif op.action == ob.RETURN_APPROVE:
        for line in lines:
            repo.set_status(session, line, LineStatus.RETURNED, source, "return approved")
        await _set_claims(session, lines, ClaimStatus.COMPLETED)


async def _apply_refusal(session: Any, op: ChannelOp, failed: list[ItemResult]) -> None:
    """R18: a marketplace refusal of a dispatch is recorded on the lines, which stay put."""
    if op.action != ob.DISPATCH:
        return
    order = await repo.get_order(session, op.order_id)
    for line in order.lines:
        if line.id in set(op.payload.get("line_ids", [])):
            line.invoice_rejection = f"{failed[0].code}: {failed[0].message}"


async def _set_claims(session: Any, lines: Sequence[Any], status: ClaimStatus) -> None:
    from sqlalchemy import select

    ids = [ln.id for ln in lines]
    if not ids:
        return
    for claim in (await session.execute(select(Claim).where(Claim.line_id.in_(ids)))).scalars():
        if claim.status not in (ClaimStatus.COMPLETED, ClaimStatus.WITHDRAWN):
            claim.status = status.value


async def _reset_fee(session: Any, lines: Sequence[Any]) -> None:
    from sqlalchemy import select

    ids = [ln.id for ln in lines]
    for claim in (await session.execute(select(Claim).where(Claim.line_id.in_(ids)))).scalars():
        claim.fee = None
        claim.fee_payment = None
        if claim.status == ClaimStatus.HELD:
            claim.status = ClaimStatus.REQUESTED.value
