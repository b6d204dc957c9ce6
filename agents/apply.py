"""The apply agent: ``channel.changes`` → store → ``sync.results`` (R12, R15, R16, R25, R07 …).

Idempotent by change key (R17): a change applied once answers ``duplicate`` afterwards. Unknown
change kinds and changes for orders the store cannot know are quarantined (DLQ), not dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.runtime import MessageMeta
from channelsync import metrics
from store.apply_changes import UnknownChangeError, UnknownOrderError, apply_change
from topics import names
from topics.changes import ChannelChange
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
