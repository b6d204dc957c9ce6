"""Test harness: a real ``channelsync worker`` subprocess and a plain aiokafka client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from topics.envelope import Envelope
from topics.registry import encode

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """``python -m channelsync.cli worker`` (or another ``command``, e.g. ``dispatcher``) with
    the given environment; waits for 'ready'."""

    def __init__(self, env: dict[str, str], log_path: Path, command: str = "worker") -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_after: float | None = None

    def start(self, timeout: float = 90.0) -> float:
        self._log = open(self.log_path, "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "channelsync.cli", self.command],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited {self.proc.returncode}:\n{self.tail()}")
            if f"channelsync {self.command} ready".encode() in self.log_path.read_bytes():
                self.ready_after = time.monotonic() - started
                return self.ready_after
            time.sleep(0.1)
        raise TimeoutError(f"{self.command} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL (crash)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if hasattr(self, "_log"):
            self._log.close()


class KafkaClient:
    """Produces envelopes and reads topics from the beginning (no consumer group)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def __aenter__(self) -> KafkaClient:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, envelope: Envelope) -> None:
        await self.send_raw(topic, envelope.order_id.encode(), encode(envelope))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        async with asyncio.timeout(15):
            await self.producer.send_and_wait(self.prefix + topic, value, key=key)

    async def read_all(self, topic: str, idle: float = 1.0) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            self.prefix + topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        out: list[bytes] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000))
                if not batch:
                    break
                for records in batch.values():
                    out.extend(r.value for r in records if r.value is not None)
        finally:
            await consumer.stop()
        return out

    async def wait_for(
        self, topic: str, predicate: Any, count: int = 1, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll ``topic`` until ``count`` JSON messages satisfy ``predicate``."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [m for m in map(json.loads, await self.read_all(topic, 0.5)) if predicate(m)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.3)
        raise TimeoutError(f"only {len(found)}/{count} matching messages on {topic}: {found}")


def result_for(event_ids: Iterable[uuid.UUID]) -> Any:
    wanted = {str(e) for e in event_ids}
    return lambda m: m.get("payload", {}).get("source_event_id") in wanted
