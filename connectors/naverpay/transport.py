"""HTTP plumbing of the Naver Commerce API client: token, retries, per-item write results.

Transport promises (on top of :class:`connectors.base.BaseHttpClient`):

* every call carries ``Authorization: Bearer`` from :class:`~connectors.naverpay.auth.TokenProvider`;
  a 401 renews the token and repeats the request **once**; a second 401 raises
  ``AuthenticationError``;
* each endpoint has its own token bucket (``rate_per_second``, ``endpoint_rates``), as Naver
  counts per API;
* **reads** (feed, detail) are retried on 429 / 5xx / timeouts with backoff, ``Retry-After``
  honoured; **writes** are retried in place only when Naver certainly did not execute them
  (429, 503, connection refused). A timeout or other 5xx on a write leaves its outcome unknown:
  it raises ``RetryableError`` at once, without resending, and the caller re-reads the product
  order (:meth:`NaverPayClient.claim_states`) before deciding (spec §6.4: claim writes are
  irreversible);
* 4xx answers raise ``PermanentError`` subclasses carrying Naver's ``code``, ``message`` and
  ``traceId``, never retried; no credential appears in an error or a log line.

Write operations answer one :class:`ItemResult` per product order. Per-item refusals (Naver's
``failProductOrderInfos``, a 4xx on a per-id endpoint, a local R18 check) are results, not
exceptions. A retryable failure raises when nothing of the call was done yet; after a partial
success the remaining items come back as retryable results instead, so no success is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from connectors.base import DEFAULT_RETRY_POLICY, BaseHttpClient, RateLimiter, RetryPolicy
from connectors.contract import ItemResult
from connectors.errors import AuthenticationError, PermanentError, RetryableError
from connectors.naverpay import endpoints as ep
from connectors.naverpay.auth import TokenProvider
from connectors.naverpay.errors import (
    NOT_EXECUTED_STATUSES,
    WriteOutcomeUnknownError,
    error_from_response,
    json_body,
)
from connectors.naverpay.mapping import item_results

log = logging.getLogger(__name__)

T = TypeVar("T")
Json = dict[str, Any]

_KEEP_TOKENS = 4
_UNKNOWN = "write outcome unknown, re-read the product order before repeating"


@dataclass(frozen=True)
class _Unknown:
    """A write whose outcome is unknown, smuggled past the base retry loop."""

    error: WriteOutcomeUnknownError


class NaverTransport(BaseHttpClient):
    """Authenticated, rate-limited, retrying calls to the Naver Commerce API."""

    connector_name = "naverpay"

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        account: str = "default",
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_per_second: float | None = ep.DOCUMENTED_RATE,
        endpoint_rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] | None = None,
        token_type: str = "SELF",
        seller_account_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: Any = None,
    ) -> None:
        super().__init__(
            base_url,
            timeout=timeout,
            retry=retry,
            limiter=RateLimiter(rate_per_second, dict(endpoint_rates or {})),
            secrets=[client_secret],
            transport=transport,
            observer=observer,
        )
        self.account = account
        self.clock = clock or time.time
        self.tokens = TokenProvider(
            self.http,
            client_id,
            client_secret,
            token_path=ep.path("token"),
            token_type=token_type,
            seller_account_id=seller_account_id,
            clock=self.clock,
            send=self._send_token_request,
            on_token=self._remember_secret,
        )

    def _remember_secret(self, token: str) -> None:
        self._secrets.append(token)
        del self._secrets[1 : max(1, len(self._secrets) - _KEEP_TOKENS)]

    async def _send_token_request(
        self, once: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """One token request through the ``token`` bucket; 429/5xx raise (the outer call
        retries), any other answer is returned for the provider to judge."""
        await self.limiter.acquire("token")
        self.stats.by_endpoint["token"] = self.stats.by_endpoint.get("token", 0) + 1
        try:
            resp = await once()
        except httpx.HTTPError as exc:
            raise RetryableError(f"naverpay token: transport error {type(exc).__name__}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise error_from_response(resp, "token", redact=self.redact)
        return resp

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def _exchange(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any
    ) -> httpx.Response:
        token = await self.tokens.get()
        resp = await self.http.request(
            method, url, params=params, json=body, headers=self._headers(token)
        )
        if resp.status_code == 401:
            log.info("naverpay %s answered 401: renewing the token once", url)
            await self.tokens.invalidate(token)
            token = await self.tokens.get()
            resp = await self.http.request(
                method, url, params=params, json=body, headers=self._headers(token)
            )
        return resp

    async def _request(
        self,
        endpoint: str,
        *,
        ids: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        write: bool = False,
    ) -> Json:
        """One logical call; returns the JSON body. See the module docstring for retries."""
        method = ep.ENDPOINTS[endpoint][0]
        url = ep.path(endpoint, **(ids or {}))

        async def send() -> Json | _Unknown:
            try:
                resp = await self._exchange(method, url, params, body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise RetryableError(
                    f"naverpay {endpoint}: not connected ({type(exc).__name__})"
                ) from None
            except httpx.HTTPError as exc:
                if write:
                    return _Unknown(
                        WriteOutcomeUnknownError(
                            f"naverpay {endpoint}: {type(exc).__name__}; {_UNKNOWN}"
                        )
                    )
                raise RetryableError(f"naverpay {endpoint}: {type(exc).__name__}") from None
            if resp.status_code >= 400:
                error = error_from_response(resp, endpoint, redact=self.redact)
                if (
                    write
                    and isinstance(error, RetryableError)
                    and resp.status_code not in NOT_EXECUTED_STATUSES
                ):
                    return _Unknown(
                        WriteOutcomeUnknownError(
                            f"{error.message}; {_UNKNOWN}",
                            code=error.code,
                            trace_id=error.trace_id,
                            status=error.status,
                        )
                    )
                raise error
            return json_body(resp)

        result = await self.call(endpoint, send)
        if isinstance(result, _Unknown):
            self.stats.failures += 1
            log.warning("%s", result.error)
            raise result.error
        return result

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # --- write helpers ---------------------------------------------------------------------------
    async def _each(
        self,
        items: Sequence[T],
        unit_of: Callable[[T], str],
        size: int,
        op: Callable[[Sequence[T]], Awaitable[list[ItemResult]]],
    ) -> list[ItemResult]:
        chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
        results: list[ItemResult] = []
        for n, chunk in enumerate(chunks):
            try:
                results.extend(await op(chunk))
            except AuthenticationError:
                raise
            except RetryableError as exc:
                if not results:
                    raise
                for rest in chunks[n:]:
                    for item in rest:
                        unknown = rest is chunk and isinstance(exc, WriteOutcomeUnknownError)
                        results.append(
                            ItemResult(
                                unit_of(item),
                                False,
                                exc.code or "RETRYABLE",
                                str(exc),
                                retryable=True,
                                detail={"outcome_unknown": unknown},
                            )
                        )
                break
            except PermanentError as exc:
                detail = {"trace_id": exc.trace_id} if exc.trace_id else {}
                results.extend(
                    ItemResult(unit_of(i), False, exc.code, exc.message, detail=dict(detail))
                    for i in chunk
                )
        return results

    async def _per_id(
        self,
        endpoint: str,
        unit_ids: Sequence[str],
        body: Callable[[str], Json | None] = lambda _u: None,
    ) -> list[ItemResult]:
        async def op(chunk: Sequence[str]) -> list[ItemResult]:
            unit = chunk[0]
            answer = await self._request(endpoint, ids={"id": unit}, body=body(unit), write=True)
            return item_results(answer.get("data"), [unit], trace_id=answer.get("traceId"))

        return await self._each(list(dict.fromkeys(unit_ids)), str, 1, op)
