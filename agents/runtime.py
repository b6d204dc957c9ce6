"""What every agent shares: settings, the store, the producer, connectors and failure handling.

Delivery contract (faust-notes.md P1): an agent's loop body never lets an exception escape.
A message is acknowledged only after its effect — or its failure record — is durably written:

* a message that cannot be decoded, or that a handler refuses with an unexpected error, is
  written to ``failed_events`` and to ``<topic>.dlq`` (with its reason) *before* the loop moves
  on (S3);
* an infrastructure failure (database unreachable, produce timeout) retries the same message in
  place with capped backoff: the partition waits, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from channelsync import metrics
from channelsync.settings import Settings
from store.models import FailedEvent
from topics import names
from topics.envelope import SCHEMA_VERSION, Envelope
from topics.registry import encode
from topics.results import DeadLetter, Outcome, SyncResult

log = logging.getLogger(__name__)

RAW_LIMIT = 65_536  # characters of a refused message kept in its failure record and DLQ letter


class ProduceTimeoutError(RuntimeError):
    """A produce did not complete within ``PRODUCE_TIMEOUT_SECONDS`` (aiokafka can hang)."""


@dataclass(frozen=True)
class MessageMeta:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None


class Runtime:
    def __init__(
        self,
        settings: Settings,
        app: faust.App,
        topics: dict[str, faust.TopicT],
        engine: AsyncEngine,
    ) -> None:
        self.settings = settings
        self.app = app
        self.topics = topics
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.connectors: dict[str, Any] = {}
        self.goodsflow: Any = None
        self.dispatcher: Any = None
        self.ingestors: dict[str, Any] = {}
        self.tracking_poller: Any = None
        self.ready = False
        #: why the broker is known to have lost its state (topics, offsets, groups), or None
        self.broker_lost: str | None = None
        self.last_produce_error: str | None = None
        self.connector_health: dict[str, str] = {}

    def mark_broker_lost(self, reason: str) -> None:
        """The broker lost its state under this worker: ``/health`` answers 503 from now on."""
        self.broker_lost = reason

    # --- producing ----------------------------------------------------------------------------
    async def produce(self, topic: str, key: str, value: bytes) -> None:
        """Send to ``topic`` (base name; the prefix is added) and wait for the broker's ack,
        bounded by the produce timeout."""
        topic = self.settings.topic_prefix + topic
        try:
            async with asyncio.timeout(self.settings.produce_timeout_seconds):
                await self.app.producer.send_and_wait(
                    topic, key.encode(), value, partition=None, timestamp=None, headers=None
                )
        except TimeoutError:
            self.last_produce_error = f"produce to {topic} timed out"
            raise ProduceTimeoutError(self.last_produce_error) from None
        self.last_produce_error = None

    async def produce_many(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        """Send many messages and wait for every ack, bounded by the produce timeout."""
        if not items:
            return
        full = self.settings.topic_prefix + topic
        try:
            async with asyncio.timeout(self.settings.produce_timeout_seconds):
                futures = [
                    await self.app.producer.send(
                        full, key.encode(), value, partition=None, timestamp=None, headers=None
                    )
                    for key, value in items
                ]
                await asyncio.gather(*futures)
        except TimeoutError:
            self.last_produce_error = f"produce to {full} timed out"
            raise ProduceTimeoutError(self.last_produce_error) from None
        self.last_produce_error = None

    async def emit(self, topic: str, envelope: Envelope) -> None:
        await self.produce(topic, envelope.order_id, encode(envelope))

    async def emit_result(
        self,
        source: Envelope,
        outcome: Outcome,
        message: str = "",
        *,
        rule: str | None = None,
        error: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        key, value = self.result_message(
            source, outcome, message, rule=rule, error=error, detail=detail
        )
        await self.produce(names.SYNC_RESULTS, key, value)

    # --- observation ----------------------------------------------------------------------------
    def observe_command(self, type_: str, outcome: Outcome) -> None:
        metrics.EVENTS_CONSUMED.labels(names.OMS_COMMANDS, type_, outcome.value).inc()

    def observe_op(self, op: Any, outcome: Outcome) -> None:
        metrics.OPS.labels(op.channel, op.action, outcome.value).inc()
        if outcome is Outcome.SUCCEEDED and op.created_at is not None:
            delay = (datetime.now(UTC) - op.created_at).total_seconds()
            metrics.PUSH_DELAY.labels(op.channel, op.action).observe(max(0.0, delay))

    async def dead_letter_op(self, op: Any, message: str) -> None:
        """A permanently failed op goes to ``oms.commands.dlq`` with the marketplace's reason."""
        letter = DeadLetter(
            source_topic=names.OMS_COMMANDS,
            key=op.order_id,
            reason=f"op_failed:{op.action}",
            error=message[:2000],
            raw=json.dumps(
                {
                    "idempotency_key": op.idempotency_key,
                    "payload": op.payload,
                    "error": op.last_error,
                },
                default=str,
            ),
            at=datetime.now(UTC),
        )
        value = json.dumps(letter.model_dump(mode="json")).encode()
        metrics.EVENTS_DEAD_LETTERED.labels(names.OMS_COMMANDS, "op_failed").inc()
        await retry_in_place(
            "produce op dead letter",
            lambda: self.produce(names.dlq(names.OMS_COMMANDS), op.order_id, value),
        )

    # --- failures -----------------------------------------------------------------------------
    def result_message(
        self,
        source: Envelope,
        outcome: Outcome,
        message: str = "",
        *,
        rule: str | None = None,
        error: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> tuple[str, bytes]:
        # built from values this process made (not input): no validation, which is most of
        # the cost of a result (a test checks that these messages decode as valid)
        result = SyncResult.model_construct(
            source_event_id=source.event_id,
            source_type=source.type,
            outcome=outcome,
            rule=rule,
            message=message,
            error=error,
            detail=detail or {},
        )
        env = Envelope.model_construct(
            event_id=uuid.uuid4(),
            type="sync.result",
            occurred_at=datetime.now(UTC),
            order_id=source.order_id,
            channel=source.channel,
            schema_version=SCHEMA_VERSION,
            payload=result.model_dump(mode="json"),
        )
        return env.order_id, encode(env)

    def base_topic(self, topic: str) -> str:
        prefix = self.settings.topic_prefix
        return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic

    async def quarantine(
        self, meta: MessageMeta, raw: bytes | None, reason: str, error: str
    ) -> None:
        """Record a refused message durably, then send it to the topic's DLQ.

        Retries in place (with backoff) until both writes succeed: the message is not acked
        before its failure is recorded.
        """
        # PostgreSQL text cannot hold NUL: a NUL byte must not make the failure record itself
        # fail forever (that would block the partition)
        text = (raw or b"").decode("utf-8", "replace").replace("\x00", "\ufffd")
        error = error.replace("\x00", "\ufffd")
        truncated = len(text) > RAW_LIMIT
        text = text[:RAW_LIMIT]
        key = meta.key.decode("utf-8", "replace") if meta.key else None
        record_id = await retry_in_place(
            "record failed event", lambda: self._record_failure(meta, text, reason, error)
        )
        letter = DeadLetter(
            source_topic=meta.topic,
            partition=meta.partition,
            offset=meta.offset,
            key=key,
            reason=reason,
            error=error[:2000],
            raw=text,
            raw_truncated=truncated,
            at=datetime.now(UTC),
        )
        value = json.dumps(letter.model_dump(mode="json")).encode()
        await retry_in_place(
            "produce dead letter",
            lambda: self.produce(names.dlq(self.base_topic(meta.topic)), key or "", value),
        )
        await retry_in_place("mark dead-lettered", lambda: self._mark_dead_lettered(record_id))
        metrics.EVENTS_DEAD_LETTERED.labels(self.base_topic(meta.topic), reason).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s %s",
            meta.topic,
            meta.partition,
            meta.offset,
            reason,
            error[:200],
        )

    async def _record_failure(self, meta: MessageMeta, text: str, reason: str, error: str) -> int:
        async with self.sessions.begin() as session:
            row = FailedEvent(
                topic=meta.topic,
                partition=meta.partition,
                offset=meta.offset,
                reason=reason,
                error=error[:4000],
                raw=text,
            )
            session.add(row)
            await session.flush()
            return row.id

    async def _mark_dead_lettered(self, record_id: int) -> None:
        async with self.sessions.begin() as session:
            row = await session.get(FailedEvent, record_id)
            if row is not None:
                row.dead_lettered = True


INFRA_ERRORS: tuple[type[BaseException], ...] = (ProduceTimeoutError, OSError, ConnectionError)


def is_infra_error(exc: BaseException) -> bool:
    """Failures of our own infrastructure (store, broker): retried in place, never DLQ'd."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, DBAPIError | OperationalError | PoolTimeout) and not is_integrity_error(exc):
        return True
    return isinstance(exc, INFRA_ERRORS)


def is_integrity_error(exc: BaseException) -> bool:
    """A unique / primary-key / foreign-key violation: usually a concurrent writer won a race
    (see :func:`agents.loop.handle_one`)."""
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError)


async def retry_in_place(what: str, fn: Any, max_delay: float = 30.0) -> Any:
    """Call ``fn()`` until it succeeds, backing off (capped, jittered) on every failure."""
    attempt = 0
    while True:
        try:
            return await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            delay = random.uniform(0, min(max_delay, 0.2 * 2**attempt))
            log.error("%s failed (attempt %d), retrying in %.1fs: %r", what, attempt, delay, exc)
            await asyncio.sleep(delay)
