"""The command agent: ``oms.commands`` → store (+ ledger intents) → ``sync.results``.

Per command: decode → duplicate check (processed_events) → state machine → effect and/or
ledger ops → commit (effect + ops + processed marker in one transaction) → result. Commands that
reach a marketplace get their final result from the dispatcher once the marketplace answered;
parked work (R12 hold, R29 claim) is reported at once. A rule refusal is committed as a
``refused`` outcome naming the rule, so a redelivery answers the same without re-checking.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agents.loop import BatchFallback
from agents.runtime import MessageMeta, Runtime
from store import batch_cache, oms, repo
from store.command_plans import PLANS, Plan
from store.errors import NotFoundError, RuleViolation
from store.ledger import OpState
from store.models import ChannelOp
from topics import names
from topics.base import Model
from topics.commands import COMMAND_MODELS
from topics.envelope import Envelope
from topics.registry import DecodeError, decode
from topics.results import Outcome

log = logging.getLogger(__name__)


def _store_only(
    fn: Callable[[AsyncSession, Envelope, Any], Awaitable[oms.Applied]],
) -> Callable[..., Awaitable[Plan]]:
    async def plan(session: AsyncSession, env: Envelope, cmd: Any) -> Plan:
        return await fn(session, env, cmd), []

    return plan


HANDLERS: dict[str, Callable[[AsyncSession, Envelope, Any], Awaitable[Plan]]] = {
    "order.import": _store_only(oms.apply_order_import),
    "line.status": _store_only(oms.apply_line_status),
    "line.split": _store_only(oms.apply_line_split),
    "invoice.deleted": _store_only(oms.apply_invoice_deleted),
    "refund.request": _store_only(oms.apply_refund),
    **PLANS,
}


def _detail(applied: oms.Applied, ops: list[ChannelOp]) -> dict[str, Any]:
    """The result's detail: the plan's own, plus the ids of the ops it recorded."""
    return {**applied.detail, "ops": [op.id for op in ops]} if ops else applied.detail


class CommandHandler:
    """Callable handler for :func:`agents.loop.run_safely` on ``oms.commands``."""

    def __init__(self, runtime: Runtime, on_ops: Callable[[], None] | None = None) -> None:
        self.rt = runtime
        self.on_ops = on_ops

    async def __call__(self, raw: bytes | None, meta: MessageMeta) -> None:
        env, cmd = decode(raw, COMMAND_MODELS)
        await self.handle(env, cmd)

    async def handle_batch(self, items: list[tuple[bytes | None, MessageMeta]]) -> None:
        """All commands of a batch in one transaction (the fast path). Anything unusual — a bad
        message, a rule refusal, a duplicate inside the batch — raises :class:`BatchFallback`
        and the loop processes the batch one by one with :meth:`__call__` instead."""
        try:
            decoded = [decode(raw, COMMAND_MODELS) for raw, _ in items]
        except DecodeError:
            raise BatchFallback from None
        ids = [str(env.event_id) for env, _ in decoded]
        if len(set(ids)) != len(ids):
            raise BatchFallback
        results: list[tuple[str, bytes]] = []
        planned: list[tuple[Envelope, oms.Applied, list[ChannelOp]]] = []
        async with self.rt.sessions() as session:
            if await repo.any_processed(session, ids):
                raise BatchFallback
            orders = await repo.lock_orders(session, [env.order_id for env, _ in decoded])
            await batch_cache.prefetch(session, orders)
            for env, cmd in decoded:
                fn = HANDLERS[env.type]
                try:
                    applied, ops = await fn(session, env, cmd)
                except (RuleViolation, NotFoundError):
                    raise BatchFallback from None
                repo.mark_processed(
                    session, str(env.event_id), names.OMS_COMMANDS, env.type, "succeeded"
                )
                planned.append((env, applied, ops))
            await session.flush()  # one round of inserts for the whole batch; op ids assigned
            batch_cache.drop(session)
            for env, applied, ops in planned:
                parked = [op for op in ops if op.state == OpState.PARKED]
                outcome = Outcome.PARKED if parked else Outcome.SUCCEEDED
                self.rt.observe_command(env.type, outcome)
                if parked or not ops:
                    rule = (parked[0].last_error or {}).get("rule") if parked else None
                    results.append(
                        self.rt.result_message(
                            env, outcome, applied.message, rule=rule, detail=_detail(applied, ops)
                        )
                    )
            await session.commit()
        any_ops = any(ops for _, _, ops in planned)
        if any_ops and self.on_ops is not None:
            self.on_ops()
        await self.rt.produce_many(names.SYNC_RESULTS, results)

    async def handle(self, env: Envelope, cmd: Model) -> None:
        fn = HANDLERS.get(env.type)
        if fn is None:
            raise LookupError(f"no handler for command type {env.type}")
        event_id = str(env.event_id)
        rule: str | None = None
        detail: dict[str, Any] = {}
        deferred = False
        async with self.rt.sessions() as session:
            done = await repo.already_processed(session, event_id)
            if done is not None:
                outcome, message = Outcome.DUPLICATE, f"already {done.outcome}"
                await session.rollback()
            else:
                try:
                    applied, ops = await fn(session, env, cmd)
                    repo.mark_processed(
                        session, event_id, names.OMS_COMMANDS, env.type, "succeeded"
                    )
                    await session.commit()
                    message, detail = applied.message, _detail(applied, ops)
                    parked = [op for op in ops if op.state == OpState.PARKED]
                    if parked:
                        outcome = Outcome.PARKED
                        rule = (parked[0].last_error or {}).get("rule")
                    else:
                        outcome = Outcome.SUCCEEDED
                    deferred = bool(ops) and not parked
                    if ops and self.on_ops is not None:
                        self.on_ops()
                except (RuleViolation, NotFoundError) as exc:
                    await session.rollback()
                    repo.mark_processed(session, event_id, names.OMS_COMMANDS, env.type, "refused")
                    await session.commit()
                    outcome, message = Outcome.REFUSED, str(exc)
                    rule = exc.rule if isinstance(exc, RuleViolation) else None
        self.rt.observe_command(env.type, outcome)
        if not deferred:  # otherwise the dispatcher reports once the marketplace answered
            await self.rt.emit_result(env, outcome, message, rule=rule, detail=detail)
