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
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import update

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
#: a SENT op older than this is taken for a crash's leftover and reconciled (never one that is
#: in flight in this process: see ``Dispatcher.inflight``)
SENT_STALE_SECONDS = 30.0
#: how often the results outbox is swept for results a stop left unsent
RESEND_EVERY_SECONDS = 30.0
#: longest a claim read may precede the dispatch that relies on it, under a rate limit
CLAIM_FRESH_SECONDS = 2.0


class Dispatcher:
    def __init__(self, runtime: Any, *, round_limit: int = 500, idle_seconds: float = 1.0) -> None:
        self.rt = runtime
        self.round_limit = round_limit
        self.idle_seconds = idle_seconds
        self.wake = asyncio.Event()
        self.rounds = 0
        #: ops of batches being executed now: a later round never picks them again, even when a
        #: slow call outlives the SENT-is-stale threshold (that threshold is for crashes)
        self.inflight: set[int] = set()

    def nudge(self) -> None:
        self.wake.set()

    async def run_forever(self) -> None:
        next_sweep = 0.0
        while True:
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + RESEND_EVERY_SECONDS
                try:
                    await self.resend_unreported()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("re-sending unreported results failed")
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
            ops = await _ready_ops(session, self.round_limit, skip=self.inflight)
        full_round = len(ops) >= self.round_limit
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
            if full_round and action in BATCH_ACTIONS:
                group = _whole_batches(group, getattr(connector, "max_dispatch_batch", 1))
            tasks.append(self._run_group(connector, action, group))
        for n in await asyncio.gather(*tasks):
            done += n
        return done

    async def _run_group(
        self, connector: MarketplaceConnector, action: str, ops: list[ChannelOp]
    ) -> int:
        if action in BATCH_ACTIONS:
            size = max(1, getattr(connector, "max_dispatch_batch", 1))
            group = self._claim_group_size(connector, size)
            # two groups in flight: one waits for its rate-limit token or the marketplace while
            # the other does its store work (dispatch ops of one round are for distinct units)
            gate = asyncio.Semaphore(2)

            async def one(chunk: list[ChannelOp]) -> int:
                async with gate:
                    return await self._execute(connector, action, chunk, size)

            chunks = [ops[i : i + group] for i in range(0, len(ops), group)]
            return sum(await asyncio.gather(*(one(c) for c in chunks)))
        n = 0
        for op in ops:
            n += await self._execute(connector, action, [op], 1)
        return n

    def _claim_group_size(self, connector: MarketplaceConnector, size: int) -> int:
        """How many dispatches share one claim read: as many as the claim API takes at once,
        but no more than the connector can dispatch in about two seconds at its rate limit, so
        the claim state a dispatch relies on (R29/R25) is never older than that."""
        most = max(size, getattr(connector, "max_claim_batch", size))
        rate = {
            Channel.NAVERPAY: self.rt.settings.naverpay_rate_per_second,
            Channel.QOO10: self.rt.settings.qoo10_rate_per_second,
        }.get(Channel(connector.channel))
        if rate is None or rate <= 0:
            return most
        return max(size, min(most, size * max(1, int(rate * CLAIM_FRESH_SECONDS))))

    async def _execute(
        self, connector: MarketplaceConnector, action: str, ops: list[ChannelOp], size: int
    ) -> int:
        """One group: (dispatches) read the claims → one transaction re-checks every op (hold
        R12, claim R29/R25) and claims the ready ones (SENT) → calls of at most ``size`` ops →
        outcome of each call."""
        self.inflight.update(op.id for op in ops)
        try:
            return await self._execute_inflight(connector, action, ops, size)
        finally:
            self.inflight.difference_update(op.id for op in ops)

    async def _execute_inflight(
        self, connector: MarketplaceConnector, action: str, ops: list[ChannelOp], size: int
    ) -> int:
        verdicts: dict[int, tuple[str, str]] = {}
        if action == ob.DISPATCH:
            gate = await self._claim_gate(connector, ops)
            if gate is None:
                return len(ops)
            verdicts = gate
        async with self.rt.sessions() as session:
            parked, already, claimed = await _claim(session, ops, verdicts)
            if already:
                _keep = await _preload(session, already)
                for op in already:
                    row = await session.get(ChannelOp, op.id)
                    assert row is not None
                    ledger.mark_done(
                        row, {"reconciled": "marketplace already shows the unit dispatched"}
                    )
                    await _apply_success(session, row)
            await session.commit()
        messages = [
            self._result(op, Outcome.PARKED, "dispatch parked: open buyer cancel request", rule=r)
            for op, r in parked
            if r != "R12"
        ] + [
            self._result(op, Outcome.SUCCEEDED, "already dispatched on the marketplace")
            for op in already
        ]
        if messages:
            await self.rt.produce_many(names.SYNC_RESULTS, messages)
            await self._mark_emitted([op.id for op in already])
        ready = [op for op in ops if op.id in claimed]
        for op in ready:
            op.attempts = claimed[op.id]
            op.state = OpState.SENT.value
        for i in range(0, len(ready), size):
            await self._call_and_record(connector, action, ready[i : i + size])
        return len(ops)

    async def _call_and_record(
        self, connector: MarketplaceConnector, action: str, ready: list[ChannelOp]
    ) -> None:
        try:
            results = await _call(connector, action, ready)
        except RetryableError as exc:
            await self._record_error(ready, exc, retryable=True)
            return
        except ConnectorError as exc:
            await self._record_error(ready, exc, retryable=False)
            return
        await self._record_results(action, ready, results)

    async def _claim_gate(
        self, connector: MarketplaceConnector, ops: list[ChannelOp]
    ) -> dict[int, tuple[str, str]] | None:
        """R29/R25: read the units' claim state. Returns op id → ("park", status) for a unit
        with an open cancel request (unless an operator chose to ship anyway), ("already", "")
        for a unit the marketplace shows dispatched; ops not named ship. None when the read
        failed (the error is recorded on the ops: retry with backoff, or failed)."""
        units = [op.payload["unit_id"] for op in ops if not op.payload.get("override_claim")]
        if not units:
            return {}
        try:
            states = await connector.claim_states(units)
        except RetryableError as exc:
            await self._record_error(ops, exc, retryable=True, attempted=False)
            return None
        except ConnectorError as exc:
            await self._record_error(ops, exc, retryable=False, attempted=False)
            return None
        verdicts: dict[int, tuple[str, str]] = {}
        for op in ops:
            st = states.get(op.payload["unit_id"])
            if op.payload.get("override_claim") or st is None:
                continue
            if st.open_cancel_request:
                verdicts[op.id] = ("park", st.status)
            elif st.dispatched:
                verdicts[op.id] = ("already", "")
        return verdicts

    async def _record_error(
        self,
        ops: Sequence[ChannelOp],
        exc: ConnectorError,
        *,
        retryable: bool,
        attempted: bool = True,
    ) -> None:
        """Record a failed call (or a failed claim read, ``attempted=False``: it counts as an
        attempt too, so its backoff grows and it ends FAILED like a failing call)."""
        err = exc.as_dict()
        async with self.rt.sessions() as session:
            _keep = await _preload(session, ops)
            rows = [await session.get(ChannelOp, op.id) for op in ops]
            for row in rows:
                assert row is not None
                if not attempted:
                    row.attempts += 1
                if retryable and row.attempts < self.rt.settings.retry_max_attempts * 4:
                    delay = _backoff(row.attempts, getattr(exc, "retry_after", None))
                    ledger.mark_retry(row, err, delay)
                else:
                    ledger.mark_failed(row, err)
            await session.commit()
        messages = []
        for row in rows:
            assert row is not None
            if row.state == OpState.FAILED:
                messages.append(self._result(row, Outcome.FAILED, str(exc), error=err))
            else:
                messages.append(self._result(row, Outcome.RETRYING, str(exc), error=err))
        await self.rt.produce_many(names.SYNC_RESULTS, messages)
        await self._mark_emitted(
            [r.id for r in rows if r is not None and r.state == OpState.FAILED]
        )
        for row in rows:
            assert row is not None
            if row.state == OpState.FAILED:
                await self.rt.dead_letter_op(row, str(exc))

    async def _record_results(
        self, action: str, ops: list[ChannelOp], results: list[ItemResult]
    ) -> None:
        """The outcome of one call, in one transaction: every op's new state in one bulk
        UPDATE by primary key, the store effects of the acknowledged ones (R06 SHIPPING, R15
        collapse, …) and the refusals (R18) on their lines; then one result per op."""
        by_unit: dict[str, list[ItemResult]] = defaultdict(list)
        for r in results:
            by_unit[r.unit_id].append(r)
        now = utcnow()
        emitted: list[tuple[ChannelOp, Outcome, str, dict[str, Any] | None]] = []
        rows: list[dict[str, Any]] = []
        refused: list[tuple[ChannelOp, list[ItemResult]]] = []
        for op in ops:
            units = _op_units(op)
            mine = [r for u in units for r in by_unit.get(u, [])]
            failed = [r for r in mine if not r.ok]
            if not mine:
                failed = [
                    ItemResult(u, False, "NO_RESULT", "marketplace returned no result")
                    for u in units
                ]
            response: dict[str, Any] | None = None
            error: dict[str, Any] | None = None
            due: datetime | None = None
            if not failed:
                state, response = OpState.SUCCEEDED, {"items": [_item(r) for r in mine]}
                emitted.append((op, Outcome.SUCCEEDED, f"{op.action} acknowledged", None))
            elif all(r.retryable for r in failed):
                state, error = OpState.RETRY, {"items": [_item(r) for r in failed]}
                due = now + timedelta(seconds=_backoff(op.attempts, None))
                emitted.append((op, Outcome.RETRYING, failed[0].message, error))
            else:
                state = OpState.FAILED
                error = {
                    "items": [_item(r) for r in failed],
                    "code": failed[0].code,
                    "message": failed[0].message,
                }
                refused.append((op, failed))
                emitted.append(
                    (op, Outcome.FAILED, f"{failed[0].code}: {failed[0].message}", error)
                )
            op.state, op.response, op.last_error = state.value, response, error
            rows.append(
                {
                    "id": op.id,
                    "state": state.value,
                    "response": response,
                    "last_error": error,
                    "next_attempt_at": due,
                    "updated_at": now,
                }
            )
        async with self.rt.sessions() as session:
            await session.execute(update(ChannelOp), rows)
            touched = {
                op.order_id for op, outcome, _, _ in emitted if outcome is not Outcome.RETRYING
            }
            _keep = await _load_orders(session, touched)
            for op, outcome, _, _ in emitted:
                if outcome is Outcome.SUCCEEDED:
                    await _apply_success(session, op)
            for op, failed in refused:
                await _apply_refusal(session, op, failed)
            await session.commit()
        messages = []
        for op, outcome, message, error in emitted:
            rule = "R18" if _is_invoice_refusal(op, error) else None
            messages.append(self._result(op, outcome, message, error=error, rule=rule))
        await self.rt.produce_many(names.SYNC_RESULTS, messages)
        await self._mark_emitted(
            [op.id for op, outcome, _, _ in emitted if outcome is not Outcome.RETRYING]
        )
        for op, outcome, message, _ in emitted:
            if outcome is Outcome.FAILED:
                await self.rt.dead_letter_op(op, message)

    async def _mark_emitted(self, ids: list[int]) -> None:
        """Results outbox: these ops' final results are acknowledged by the broker. If this
        write fails the results are re-sent later (:meth:`resend_unreported`): a duplicate
        result, never a lost one."""
        if not ids:
            return
        try:
            async with self.rt.sessions() as session:
                await session.execute(
                    update(ChannelOp).where(ChannelOp.id.in_(ids)).values(result_emitted=True)
                )
                await session.commit()
        except Exception:
            log.warning("could not mark %d result(s) sent; they will be re-sent", len(ids))

    async def resend_unreported(self, limit: int = 500) -> int:
        """Re-send the results of final ops (succeeded / failed) whose result was never
        acknowledged — the outcome was committed, then the process died before the produce.
        Only ops final for longer than ``SENT_STALE_SECONDS`` and not in flight here are
        taken, so a result on its way is not doubled. Returns how many were re-sent."""
        from sqlalchemy import select

        older = utcnow() - timedelta(seconds=SENT_STALE_SECONDS)
        async with self.rt.sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(ChannelOp)
                        .where(
                            ChannelOp.result_emitted.is_(False),
                            ChannelOp.state.in_([OpState.SUCCEEDED.value, OpState.FAILED.value]),
                            ChannelOp.updated_at < older,
                        )
                        .order_by(ChannelOp.id)
                        .limit(limit)
                    )
                ).scalars()
            )
        rows = [r for r in rows if r.id not in self.inflight]
        if not rows:
            return 0
        messages = []
        for row in rows:
            if row.state == OpState.SUCCEEDED:
                messages.append(self._result(row, Outcome.SUCCEEDED, f"{row.action} acknowledged"))
            else:
                err = row.last_error or {}
                text = f"{err.get('code')}: {err.get('message')}" if err.get("code") else str(err)
                messages.append(self._result(row, Outcome.FAILED, text, error=err))
        await self.rt.produce_many(names.SYNC_RESULTS, messages)
        await self._mark_emitted([r.id for r in rows])
        log.warning("re-sent %d result(s) that a stop had left unsent", len(rows))
        return len(rows)

    def _result(
        self,
        op: ChannelOp,
        outcome: Outcome,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        rule: str | None = None,
    ) -> tuple[str, bytes]:
        source = Envelope.model_construct(  # built here from stored fields: no validation
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


async def _load_orders(session: Any, order_ids: set[str]) -> list[Any]:
    """The orders (with their lines) into the session's identity map in one query."""
    from sqlalchemy import select

    from store.models import Order

    if not order_ids:
        return []
    return list(
        (await session.execute(select(Order).where(Order.id.in_(sorted(order_ids))))).scalars()
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


async def _claim(
    session: Any, ops: Sequence[ChannelOp], verdicts: dict[int, tuple[str, str]]
) -> tuple[list[tuple[ChannelOp, str]], list[ChannelOp], dict[int, int]]:
    """In the caller's transaction, with conditional UPDATEs (atomic per row, so two workers'
    dispatchers never both take an op): ops of held orders → PARKED (R12); ops the claim gate
    parked → PARKED (R29/R25); the rest → SENT with attempts + 1. Only ops still due are
    touched: PENDING, RETRY, or SENT left stale by a crash. Returns (parked with their rule,
    "already dispatched" ops still due — the caller records them done —, op id → attempts of
    the ops now SENT)."""
    from sqlalchemy import and_, or_, select, update

    from store.models import Order

    now = utcnow()
    due = or_(
        ChannelOp.state.in_([OpState.PENDING.value, OpState.RETRY.value]),
        and_(
            ChannelOp.state == OpState.SENT.value,
            ChannelOp.updated_at < now - timedelta(seconds=SENT_STALE_SECONDS),
        ),
    )
    held = and_(
        ChannelOp.action.in_([ob.DISPATCH, ob.REQUEST_WAYBILL]),
        ChannelOp.order_id.in_(select(Order.id).where(Order.on_hold.is_(True))),
    )
    by_id = {op.id: op for op in ops}
    parked: list[tuple[ChannelOp, str]] = []

    async def park(ids: list[int], why: dict[str, Any], extra: Any = None) -> list[int]:
        if not ids:
            return []
        stmt = update(ChannelOp).where(ChannelOp.id.in_(ids), due)
        if extra is not None:
            stmt = stmt.where(extra)
        stmt = stmt.values(state=OpState.PARKED.value, last_error=why, updated_at=now)
        return list((await session.execute(stmt.returning(ChannelOp.id))).scalars())

    for op_id in await park(
        list(by_id), {"rule": "R12", "message": "order on delivery hold"}, held
    ):
        parked.append((by_id.pop(op_id), "R12"))
    by_status: dict[str, list[int]] = defaultdict(list)
    for op_id, (verdict, status) in verdicts.items():
        if verdict == "park" and op_id in by_id:
            by_status[status].append(op_id)
    for status, ids in by_status.items():
        rule = "R25" if by_id[ids[0]].channel == Channel.QOO10 else "R29"
        why = {"rule": rule, "message": f"open buyer cancel request ({status})"}
        for op_id in await park(ids, why):
            parked.append((by_id[op_id], rule))
        for op_id in ids:
            by_id.pop(op_id, None)
    already = [op for i, op in list(by_id.items()) if verdicts.get(i, ("", ""))[0] == "already"]
    if already:
        still = set(
            (
                await session.execute(
                    select(ChannelOp.id).where(ChannelOp.id.in_([o.id for o in already]), due)
                )
            ).scalars()
        )
        for op in already:
            by_id.pop(op.id)
        already = [op for op in already if op.id in still]
    claimed: dict[int, int] = {}
    if by_id:
        stmt = (
            update(ChannelOp)
            .where(ChannelOp.id.in_(list(by_id)), due, ~held)
            .values(state=OpState.SENT.value, attempts=ChannelOp.attempts + 1, updated_at=now)
            .returning(ChannelOp.id, ChannelOp.attempts)
        )
        claimed = {i: a for i, a in (await session.execute(stmt)).all()}
    return parked, already, claimed


def _whole_batches(ops: list[ChannelOp], size: int) -> list[ChannelOp]:
    """A round cut short by its limit leaves more ops waiting: send only whole batches now
    and leave the partial tail to the next round, so no rate-limited call carries a fraction
    of what it could (the limit counts calls, not items). A group smaller than one batch
    goes as it is."""
    size = max(1, size)
    whole = len(ops) - len(ops) % size
    return ops[:whole] if whole else ops


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


async def _ready_ops(
    session: Any, limit: int, skip: set[int] | frozenset[int] = frozenset()
) -> list[ChannelOp]:
    """Due ops, oldest first, at most one open op per order unless they are dispatches of
    different units (S2: an order's later op waits for its earlier one). Ops in ``skip`` (in
    flight in this process) are not due, and block their order's later ops."""
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
            or (
                op.state == OpState.SENT
                and (now - op.updated_at).total_seconds() > SENT_STALE_SECONDS
            )
        )
        if op.order_id in blocked:
            continue
        if not due or op.id in skip:
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
