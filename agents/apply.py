"""The apply agent: ``channel.changes`` → store → ``sync.results`` (R12, R15, R16, R25, R07 …).

Idempotent by change key (R17): a change applied once answers ``duplicate`` afterwards. Unknown
change kinds and changes for orders the store cannot know are quarantined (DLQ), not dropped.

With :func:`agents.loop.run_batched`, :meth:`ApplyHandler.handle_batch` applies a whole batch in
one transaction (:func:`store.apply_batch.apply_changes_batch`); anything unusual falls back to
:meth:`ApplyHandler.__call__` message by message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.loop import BatchFallback
from agents.runtime import MessageMeta
from channelsync import metrics
from store.apply_batch import apply_changes_batch
from store.apply_changes import (
    ChangeApplied,
    UnknownChangeError,
    UnknownOrderError,
    apply_change,
)
from topics import names
from topics.changes import ChannelChange
from topics.envelope import Envelope
from topics.registry import CHANGE_MODELS, DecodeError, decode
from topics.results import Outcome


class ApplyHandler:
    def __init__(self, runtime: Any, on_ops: Any = None) -> None:
        self.rt = runtime
        self.on_ops = on_ops

    async def __call__(self, raw: bytes | None, meta: MessageMeta) -> None:
        env, change = decode(raw, CHANGE_MODELS)
        assert isinstance(change, ChannelChange)
        try:
            async with self.rt.sessions() as session:
                applied = await apply_change(session, change)
                await session.commit()
        except UnknownChangeError as exc:
            raise DecodeError("unknown_change", str(exc)) from None
        except UnknownOrderError as exc:
            raise DecodeError("unknown_order", str(exc)) from None
        if applied.outcome == "applied":
            delay = (datetime.now(UTC) - change.changed_at).total_seconds()
            metrics.COLLECTION_DELAY.labels(change.channel.value).observe(max(0.0, delay))
            if self.on_ops is not None:
                self.on_ops()
        outcome = Outcome.SUCCEEDED if applied.outcome == "applied" else Outcome.DUPLICATE
        metrics.EVENTS_CONSUMED.labels(names.CHANNEL_CHANGES, env.type, outcome.value).inc()
        await self.rt.emit_result(
            env, outcome, applied.message, detail={"change_key": change.change_key}
        )

    async def handle_batch(self, items: list[tuple[bytes | None, MessageMeta]]) -> None:
        """Every change of a batch in one transaction, then the results in one produce (same
        messages, in the same order, as :meth:`__call__` one by one). A bad message, an
        unknown change kind or order, or any other error raises (:class:`BatchFallback` for the
        expected ones) before the commit, and the loop processes the batch one by one."""
        try:
            decoded = [decode(raw, CHANGE_MODELS) for raw, _ in items]
        except DecodeError:
            raise BatchFallback from None
        pairs: list[tuple[Envelope, ChannelChange]] = []
        for env, change in decoded:
            if not isinstance(change, ChannelChange):
                raise BatchFallback
            pairs.append((env, change))
        async with self.rt.sessions() as session:
            try:
                applied = await apply_changes_batch(session, [change for _, change in pairs])
            except (UnknownChangeError, UnknownOrderError):
                raise BatchFallback from None
            await session.commit()
        results = [
            self._observe(env, change, a) for (env, change), a in zip(pairs, applied, strict=True)
        ]
        if self.on_ops is not None and any(a.outcome == "applied" for a in applied):
            self.on_ops()
        await self.rt.produce_many(names.SYNC_RESULTS, results)

    def _observe(
        self, env: Envelope, change: ChannelChange, applied: ChangeApplied
    ) -> tuple[str, bytes]:
        """Metrics of one applied change and its result message (as :meth:`__call__`)."""
        if applied.outcome == "applied":
            delay = (datetime.now(UTC) - change.changed_at).total_seconds()
            metrics.COLLECTION_DELAY.labels(change.channel.value).observe(max(0.0, delay))
        outcome = Outcome.SUCCEEDED if applied.outcome == "applied" else Outcome.DUPLICATE
        metrics.EVENTS_CONSUMED.labels(names.CHANNEL_CHANGES, env.type, outcome.value).inc()
        return self.rt.result_message(
            env, outcome, applied.message, detail={"change_key": change.change_key}
        )
