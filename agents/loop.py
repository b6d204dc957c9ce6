"""The one loop every agent runs (faust-notes.md P1/P2/P9).

``run_safely(stream, handler, runtime)`` iterates raw events with ``concurrency=1`` semantics and
guarantees no exception escapes the loop body:

* :class:`~topics.registry.DecodeError` and unexpected handler errors → quarantined (durable
  record + DLQ) before the next message;
* infrastructure errors (store/broker unreachable) → the *same* message is retried in place with
  backoff; the handler must therefore be idempotent (it is: every effect is keyed by event id).
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from agents.runtime import MessageMeta, Runtime, is_infra_error
from topics.registry import DecodeError

log = logging.getLogger(__name__)

Handler = Callable[[bytes | None, MessageMeta], Awaitable[None]]


async def handle_one(
    runtime: Runtime, handler: Handler, raw: bytes | None, meta: MessageMeta
) -> None:
    """Process one message to completion; returns only when it is safe to ack."""
    attempt = 0
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
