"""Executes ledger ops against the marketplaces (the call half of every external effect).

A background task of the worker (``DISPATCHER_MODE=inline``) or a process of its own
(``channelsync dispatcher``, :mod:`agents.dispatcher_process`); not a stream agent: messages are
acked once their intent is committed, so a slow marketplace never stalls a partition. Each round:

1. selects due ops (:func:`store.op_queue.ready_ops`): PENDING, RETRY past its time, or SENT left
   stale by a crash; oldest first; an order's later op waits for its earlier open op (S2);
   ops in flight in this process are skipped;
2. groups them per connector and action; dispatches share one claim read per group (R29/R25:
   an open buyer cancel request parks the dispatch; a unit the marketplace already shows
   dispatched is recorded done without a call), groups sized so that read is never older than
   ``CLAIM_FRESH_SECONDS`` under a rate limit;
3. takes the group in one transaction (:func:`store.op_queue.claim`: held orders → PARKED, R12;
   the rest → SENT, attempts + 1; conditional UPDATEs, so concurrent dispatchers never take the
   same op), calls the connector in batches of the API's maximum, and commits each batch's
   outcome with its store effects (:mod:`store.op_effects`);
4. emits one result per op on ``sync.results`` and marks it sent (results outbox): a result
   a stop left unsent is re-sent by :meth:`Dispatcher.resend_unreported`.

A SENT op found later (crash between call and outcome) is reconciled the same way: the claim
read shows the unit dispatched, so it is recorded done without a second call (S1).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from agents import dispatch_calls
from connectors.contract import ItemResult, MarketplaceConnector
from connectors.errors import ConnectorError, RetryableError
from store import ledger, op_effects, op_queue
from store import outbound as ob
from store.apply_changes import channel_of_order
from store.domain import Channel
from store.ledger import OpState
from store.models import ChannelOp, utcnow
from store.sql import in_list
from topics import names
from topics.envelope import Envelope
from topics.results import Outcome

log = logging.getLogger(__name__)

BATCH_ACTIONS = {ob.DISPATCH}
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
        #: orders of this round's ops that were on delivery hold when selected
        self.held: set[str] = set()

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
            self.held = set()
            ops = await op_queue.ready_ops(
                session, self.round_limit, skip=self.inflight, held=self.held
            )
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
            parked, already, claimed = await op_queue.claim(
                session, ops, verdicts, any_held=any(op.order_id in self.held for op in ops)
            )
            if already:
                _keep = await op_queue.preload(session, already)
                for op in already:
                    row = await session.get(ChannelOp, op.id)
                    assert row is not None
                    ledger.mark_done(
                        row, {"reconciled": "marketplace already shows the unit dispatched"}
                    )
                    await op_effects.apply_success(session, row)
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
            results = await dispatch_calls.call(connector, action, ready)
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
        checked = [op for op in ops if not op.payload.get("override_claim")]
        if not checked:
            return {}
        # an op sent before (a crash or an unknown outcome left it SENT, or a retry) may have
        # reached the marketplace: read its units exactly, so a done dispatch is not sent again
        fresh = [op.payload["unit_id"] for op in checked if op.attempts == 0]
        again = [op.payload["unit_id"] for op in checked if op.attempts > 0]
        try:
            states = await connector.claim_states(fresh) if fresh else {}
            if again:
                states.update(await connector.claim_states(again, exact=True))
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
            _keep = await op_queue.preload(session, ops)
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
        messages = []
        for op, outcome, message, error in emitted:
            rule = "R18" if _is_invoice_refusal(op, error) else None
            messages.append(self._result(op, outcome, message, error=error, rule=rule))
        # results first, so the outcome's own UPDATE can record that they were sent (results
        # outbox without a second transaction). A stop before the commit leaves the op SENT:
        # it is reconciled later (the claim read shows it done) and reported again — a
        # duplicate result, never a lost one. A broker that cannot take them does not hold the
        # outcome back: it is committed unmarked and the sweep re-sends the results.
        try:
            await self.rt.produce_many(names.SYNC_RESULTS, messages)
            sent = True
        except Exception as exc:
            log.warning("results of %d op(s) not sent, will be re-sent: %r", len(messages), exc)
            sent = False
        final = (OpState.SUCCEEDED.value, OpState.FAILED.value)
        for row in rows:
            row["result_emitted"] = sent and row["state"] in final
        async with self.rt.sessions() as session:
            await session.execute(update(ChannelOp), rows)
            touched = {
                op.order_id for op, outcome, _, _ in emitted if outcome is not Outcome.RETRYING
            }
            _keep = await op_queue.load_orders(session, touched)
            for op, outcome, _, _ in emitted:
                if outcome is Outcome.SUCCEEDED:
                    await op_effects.apply_success(session, op)
            for op, failed in refused:
                await op_effects.apply_refusal(
                    session, op, f"{failed[0].code}: {failed[0].message}"
                )
            await session.commit()
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
                    update(ChannelOp)
                    .where(ChannelOp.id.in_(in_list(ids)))
                    .values(result_emitted=True)
                )
                await session.commit()
        except Exception:
            log.warning("could not mark %d result(s) sent; they will be re-sent", len(ids))

    async def resend_unreported(self, limit: int = 500) -> int:
        """Re-send the results of final ops (succeeded / failed) whose result was never
        acknowledged — the outcome was committed, then the process died before the produce.
        Only ops final for longer than ``op_queue.SENT_STALE_SECONDS`` and not in flight here are
        taken, so a result on its way is not doubled. Returns how many were re-sent."""
        from sqlalchemy import select

        older = utcnow() - timedelta(seconds=op_queue.SENT_STALE_SECONDS)
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
