"""Shared connector machinery: retry policy, per-endpoint rate limiting, the HTTP base client.

Every marketplace client (Naver, Qoo10, Goodsflow) builds on :class:`BaseHttpClient`:

* ``await self.call(endpoint, send)`` takes a token from the endpoint's bucket, runs ``send``
  (one HTTP exchange that returns a parsed result or raises a :mod:`connectors.errors` error),
  and retries :class:`RetryableError` with the :class:`RetryPolicy` (exponential backoff,
  full jitter, capped, ``Retry-After`` honoured). :class:`PermanentError` is never retried.
* Transport failures (timeouts, connection errors) become ``RetryableError``.
* Messages are passed through :func:`connectors.redact.redact` with the client's secrets.

Tests make retries instant with :func:`set_testing` (the stamina idea): the policy still counts
attempts, it only stops sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from connectors.errors import ConnectorError, PermanentError, RetryableError
from connectors.redact import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_STATUS_CODES = frozenset({429, 503})
RETRYABLE_STATUS_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})

_TESTING = {"instant": False}


def set_testing(instant: bool) -> None:
    """Make every retry sleep zero seconds (tests only)."""
    _TESTING["instant"] = instant


@dataclass(frozen=True)
class RetryPolicy:
    """How a retryable failure is retried: an immutable value.

    ``delay(attempt)`` = uniform(0, min(cap, base * 2**(attempt-1))) (full jitter), but never less
    than a ``retry_after`` the service asked for.
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        """The policy of ``RETRY_MAX_ATTEMPTS`` / ``RETRY_BACKOFF_BASE_SECONDS`` /
        ``RETRY_BACKOFF_MAX_SECONDS`` (shared by every client's ``from_settings``)."""
        return cls(
            max_attempts=settings.retry_max_attempts,
            backoff_base=settings.retry_backoff_base_seconds,
            backoff_max=settings.retry_backoff_max_seconds,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        wait = random.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


DEFAULT_RETRY_POLICY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


class TokenBucket:
    """An async token bucket: ``rate`` tokens per second, bursts up to ``capacity``.

    ``acquire()`` waits (without busy looping) until a token is available. Waiters are served
    in arrival order because the wait happens under one lock.
    """

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, tokens: float = 1.0) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return
                await asyncio.sleep((tokens - self._tokens) / self.rate)


class RateLimiter:
    """One :class:`TokenBucket` per endpoint key, created on first use.

    ``rates`` overrides the default rate for named endpoints; ``None`` as the default rate
    disables limiting for endpoints without an override.
    """

    def __init__(self, default_rate: float | None, rates: dict[str, float] | None = None) -> None:
        self.default_rate = default_rate
        self.rates = dict(rates or {})
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, endpoint: str) -> None:
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            rate = self.rates.get(endpoint, self.default_rate)
            if rate is None:
                return
            bucket = self._buckets[endpoint] = TokenBucket(rate)
        await bucket.acquire()


@dataclass
class CallStats:
    """Counters a client keeps about itself (read by metrics and benchmarks)."""

    calls: int = 0
    retries: int = 0
    failures: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)


CallObserver = Callable[[str, str, float], None]
"""observer(endpoint, outcome, seconds): outcome is ok / retryable / permanent."""


class BaseHttpClient:
    """Base of the marketplace clients: httpx client, rate limit, retries, redaction."""

    connector_name = "base"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        limiter: RateLimiter | None = None,
        secrets: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.limiter = limiter or RateLimiter(None)
        self._secrets = [s for s in secrets if s]
        self.stats = CallStats()
        self.observer = observer
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    async def call(self, endpoint: str, send: Callable[[], Awaitable[T]]) -> T:
        """Run one logical call with rate limiting and retries.

        ``send`` performs a single HTTP exchange and returns the parsed result or raises a
        connector error. Transport errors become :class:`RetryableError`. Raises the last
        :class:`RetryableError` after ``retry.max_attempts`` attempts, or the first
        :class:`PermanentError` at once.
        """
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire(endpoint)
            started = time.monotonic()
            self.stats.calls += 1
            self.stats.by_endpoint[endpoint] = self.stats.by_endpoint.get(endpoint, 0) + 1
            try:
                try:
                    result = await send()
                except httpx.TimeoutException as exc:
                    raise RetryableError(f"{endpoint}: timeout ({type(exc).__name__})") from None
                except httpx.TransportError as exc:
                    raise RetryableError(
                        self.redact(f"{endpoint}: transport error {type(exc).__name__}: {exc}")
                    ) from None
            except RetryableError as exc:
                self._observe(endpoint, "retryable", started)
                if attempt >= self.retry.max_attempts:
                    self.stats.failures += 1
                    raise
                self.stats.retries += 1
                wait = 0.0 if _TESTING["instant"] else self.retry.delay(attempt, exc.retry_after)
                log.warning(
                    "%s %s retry %d/%d in %.2fs: %s",
                    self.connector_name,
                    endpoint,
                    attempt,
                    self.retry.max_attempts,
                    wait,
                    exc,
                )
                await asyncio.sleep(wait)
                continue
            except PermanentError:
                self._observe(endpoint, "permanent", started)
                self.stats.failures += 1
                raise
            self._observe(endpoint, "ok", started)
            return result

    def _observe(self, endpoint: str, outcome: str, started: float) -> None:
        if self.observer is not None:
            self.observer(endpoint, outcome, time.monotonic() - started)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form); None when absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def status_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    trace_id: str | None = None,
    retry_after: float | None = None,
) -> ConnectorError:
    """Map an HTTP status to the error class the retry loop understands."""
    from connectors.errors import (
        AuthenticationError,
        ConflictError,
        RateLimitedError,
        ValidationError,
    )

    kw: dict[str, object] = {"code": code, "trace_id": trace_id, "status": status}
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **kw)
    if status in RETRYABLE_STATUS_CODES:
        return RetryableError(message, retry_after=retry_after, **kw)
    if status in (401, 403):
        return AuthenticationError(message, **kw)  # type: ignore[arg-type]
    if status == 409:
        return ConflictError(message, **kw)  # type: ignore[arg-type]
    return ValidationError(message, **kw)  # type: ignore[arg-type]
