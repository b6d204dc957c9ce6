"""The one loop every agent runs (faust-notes.md P1/P2/P9).

``run_safely(stream, handler, runtime)`` iterates raw events with ``concurrency=1`` semantics and
guarantees no exception escapes the loop body:

* :class:`~topics.registry.DecodeError` and unexpected handler errors → quarantined (durable
  record + DLQ) before the next message;
* infrastructure errors (store/broker unreachable) → the *same* message is retried in place with
  backoff; the handler must therefore be idempotent (it is: every effect is keyed by event id);
* an ``IntegrityError`` (unique / primary key violation) is retried **once**, at once: it means
  a concurrent writer (``channelsync replay ingest``, another worker during a rebalance) inserted
  the same row first and committed. The handler opens a fresh transaction on every call, where
  its dedupe sees the winner's row and answers ``duplicate``. A second ``IntegrityError`` is a
  real conflict and is quarantined.
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from agents.runtime import MessageMeta, Runtime, is_infra_error, is_integrity_error
from topics.registry import DecodeError

log = logging.getLogger(__name__)

Handler = Callable[[bytes | None, MessageMeta], Awaitable[None]]


async def handle_one(
    runtime: Runtime, handler: Handler, raw: bytes | None, meta: MessageMeta
) -> None:
    """Process one message to completion; returns only when it is safe to ack."""
    attempt = 0
    integrity_retried = False
    while True:
        try:
            await handler(raw, meta)
            return
        except asyncio.CancelledError:
            raise
        except DecodeError as exc:
            await runtime.quarantine(meta, raw, exc.reason, exc.detail)
            return
        except Exception as exc:
            if is_integrity_error(exc) and not integrity_retried:
                integrity_retried = True
                log.warning(
                    "%s[%s]@%s lost a race to a concurrent writer, retrying once: %s",
                    meta.topic,
                    meta.partition,
                    meta.offset,
                    str(exc).splitlines()[0][:300],
                )
                continue
            if is_infra_error(exc):
                attempt += 1
                delay = random.uniform(0, min(30.0, 0.2 * 2**attempt))
                log.error(
                    "%s[%s]@%s infrastructure failure (attempt %d), retrying in %.1fs: %r",
                    meta.topic,
                    meta.partition,
                    meta.offset,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                continue
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            await runtime.quarantine(meta, raw, "handler_error", detail)
            return


async def run_safely(stream: Any, handler: Handler, runtime: Runtime) -> None:
    async for event in stream.events():
        msg = event.message
        meta = MessageMeta(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key)
        await handle_one(runtime, handler, event.value, meta)


BatchHandler = Callable[[list[tuple[bytes | None, MessageMeta]]], Awaitable[None]]


class BatchFallback(Exception):
    """Raised by a batch handler to have the batch processed message by message instead."""


async def run_batched(
    stream: Any,
    handler: Handler,
    batch_handler: BatchHandler,
    runtime: Runtime,
    *,
    max_batch: int = 500,
    within: float = 0.05,
) -> None:
    """Like :func:`run_safely`, ``max_batch`` messages at a time (faust 0.15's ``take_events``
    acks a batch only after this body finished with it). ``batch_handler`` commits the whole
    batch's effects in one transaction or raises; on any exception the batch is processed again
    message by message through ``handler`` (every effect is idempotent, so work the failed batch
    did commit is answered as duplicate)."""
    async for events in stream.take_events(max_batch, within):
        items = []
        for event in events:
            msg = event.message
            meta = MessageMeta(
                topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key
            )
            items.append((event.value, meta))
        try:
            await batch_handler(items)
            continue
        except asyncio.CancelledError:
            raise
        except BatchFallback:
            pass
        except Exception as exc:
            log.warning("batch of %d fell back to one by one: %r", len(items), exc)
        for raw, meta in items:
            await handle_one(runtime, handler, raw, meta)
