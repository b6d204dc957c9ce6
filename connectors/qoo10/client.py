"""Qoo10 QAPI client: the MarketplaceConnector for channel ``qoo10``.

Every call goes through :meth:`BaseHttpClient.call` (per-method token bucket, retries with jittered
backoff, ``Retry-After`` honoured, transport errors retryable) and :mod:`connectors.qoo10.wire`
(request form, answer envelope, result codes via the one table in :mod:`connectors.qoo10.codes`).
The seller authorization key is obtained on first use and renewed once when an answer says it is
invalid or expired (:mod:`connectors.qoo10.auth`).

Outbound operations act per Qoo10 order number (one order line; ``PackNo`` groups a cart) and
answer one :class:`ItemResult` per unit: a refusal (rule, result code) is a failed item, not an
exception. Whole-call failures raise: :class:`AuthenticationError` (credentials refused after one
renewal). After a :class:`RetryableError` has exhausted its retries the remaining units are not
attempted and come back ``retryable`` ("NOT_ATTEMPTED"). Dispatch is sent in bulk, up to
:attr:`Qoo10Client.max_dispatch_batch` orders per call (:mod:`connectors.qoo10.dispatch`); the
claim view of a batch costs O(1) calls
(:meth:`~connectors.qoo10.listing.ChangeListing.claim_states`).

Credentials (API key, password, every seller key issued) are redacted from every message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from channelsync.settings import Settings
from connectors.base import (
    DEFAULT_RETRY_POLICY,
    BaseHttpClient,
    CallObserver,
    RateLimiter,
    RetryPolicy,
    TokenBucket,
)
from connectors.contract import ItemResult, UnsupportedOperationError
from connectors.errors import (
    AuthenticationError,
    ConnectorError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from connectors.qoo10 import codes
from connectors.qoo10.auth import SellerKeyManager
from connectors.qoo10.cancels import CancelOperations
from connectors.qoo10.dates import MAX_SEARCH_WINDOW, format_date
from connectors.qoo10.dispatch import DispatchOperations
from connectors.qoo10.errors import KeyRejectedError
from connectors.qoo10.listing import (
    DEFAULT_CLAIM_DETAIL_MAX,
    DEFAULT_CLAIM_LOOKBACK,
    ChangeListing,
)
from connectors.qoo10.mapping import Row
from connectors.qoo10.wire import method_path, read_answer, request_form, request_headers
from connectors.redact import redact
from store.domain import Channel
from store.errors import RuleViolation


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class Qoo10Client(ChangeListing, DispatchOperations, CancelOperations, BaseHttpClient):
    """Qoo10 QAPI connector (see the module docstring for the error contract).

    ``check_claims_before_dispatch``: :meth:`dispatch` reads the claim view first unless told
    otherwise (R25). ``bulk_dispatch``: SetSendingInfoBulk (default) or one SetSendingInfo per
    order (the confirmed single form, should the bulk answer differ from the spec).
    ``claim_detail_max`` / ``claim_lookback``: see :meth:`claim_states`.
    """

    connector_name = "qoo10"
    channel = Channel.QOO10
    max_dispatch_batch = codes.MAX_BULK_ROWS

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        user_id: str,
        password: str | SecretStr,
        *,
        account: str = "default",
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_per_second: float | None = 5.0,
        endpoint_rates: dict[str, float] | None = None,
        account_rate_per_second: float | None = None,
        max_window: timedelta = MAX_SEARCH_WINDOW,
        check_claims_before_dispatch: bool = True,
        bulk_dispatch: bool = True,
        claim_detail_max: int = DEFAULT_CLAIM_DETAIL_MAX,
        claim_lookback: timedelta = DEFAULT_CLAIM_LOOKBACK,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._api_key = _plain(api_key)
        self._password = _plain(password)
        super().__init__(
            base_url,
            timeout=timeout,
            retry=retry,
            limiter=RateLimiter(rate_per_second, endpoint_rates),
            secrets=(self._api_key, self._password),
            transport=transport,
            observer=observer,
        )
        self._user_id = user_id
        self.account = account
        self.max_window = max_window
        self.check_claims_before_dispatch = check_claims_before_dispatch
        self.bulk_dispatch = bulk_dispatch
        self.claim_detail_max = claim_detail_max
        self.claim_lookback = claim_lookback
        self.keys = SellerKeyManager(self._create_key)
        # Qoo10 publishes no limit (5-10 req/s is folklore, qoo10.md §7): besides the bucket per
        # method, an optional bucket shared by every call of this seller account.
        self._account_bucket = (
            TokenBucket(account_rate_per_second) if account_rate_per_second else None
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Qoo10Client:
        """A client configured from ``QOO10_*`` / ``HTTP_*`` / ``RETRY_*`` settings."""
        options: dict[str, Any] = {
            "account": settings.qoo10_account_id,
            "timeout": settings.http_timeout_seconds,
            "retry": RetryPolicy.from_settings(settings),
            "rate_per_second": settings.qoo10_rate_per_second,
        }
        options.update(overrides)
        return cls(
            settings.qoo10_api_url,
            settings.qoo10_api_key,
            settings.qoo10_user_id,
            settings.qoo10_password,
            **options,
        )

    def redact(self, text: str) -> str:
        return redact(text, [self._api_key, self._password, *self.keys.issued])

    def __repr__(self) -> str:
        return f"Qoo10Client(base_url={self.base_url!r}, account={self.account!r})"

    # --- transport ---------------------------------------------------------------------------

    async def _create_key(self) -> str:
        """CreateCertificationKey → the seller authorization key. Raises AuthenticationError."""
        method = codes.CREATE_CERTIFICATION_KEY
        params = {"user_id": self._user_id, "pwd": self._password}

        async def send() -> Any:
            response = await self.http.post(
                method_path(method),
                data=request_form(params),
                headers=request_headers(self._api_key, method),
            )
            return read_answer(method, response, self.redact)

        try:
            key = await self.call(method, send)
        except KeyRejectedError as exc:
            raise AuthenticationError(
                f"{method}: API key refused ({exc.final.message})", code=exc.code
            ) from None
        except PermanentError as exc:
            raise AuthenticationError(
                f"{method}: seller login refused ({exc.message})", code=exc.code
            ) from None
        if not isinstance(key, str) or not key.strip():
            raise AuthenticationError(f"{method}: no seller authorization key in the answer")
        return key.strip()

    async def qapi(self, method: str, params: Mapping[str, object]) -> Any:
        """One QAPI call; returns ``ResultObject``.

        Renews the seller key once when the answer asks for it, then raises the code's error.
        Raises the :mod:`connectors.errors` class the code table names.
        """
        renewed = False
        while True:
            key = await self.keys.current()

            async def send(key: str = key) -> Any:
                if self._account_bucket is not None:
                    await self._account_bucket.acquire()
                response = await self.http.post(
                    method_path(method),
                    data=request_form(params),
                    headers=request_headers(key, method),
                )
                return read_answer(method, response, self.redact)

            try:
                return await self.call(method, send)
            except KeyRejectedError as exc:
                if renewed:
                    raise exc.final from None
                await self.keys.renew(key)
                renewed = True

    async def _require_detail(self, order_no: str) -> Row:
        row = await self.order_detail(order_no)
        if row is None:
            raise ValidationError(f"Qoo10 order {order_no} not found", code="NOT_FOUND")
        return row

    # --- per-unit plumbing ---------------------------------------------------------------------

    def _failed(self, unit_id: str, exc: Exception, method: str | None = None) -> ItemResult:
        if isinstance(exc, RuleViolation):
            return ItemResult(
                unit_id, False, code=exc.rule, message=str(exc), detail={"rule": exc.rule}
            )
        assert isinstance(exc, ConnectorError)
        detail: dict[str, Any] = exc.as_dict()
        rule = getattr(exc, "rule", None)
        if method and exc.code and exc.code.lstrip("-").isdigit():
            code_rule = codes.code_rule(method, int(exc.code))
            if code_rule.already_done:
                return ItemResult(
                    unit_id, True, code=exc.code, message="already done", detail=detail
                )
            rule = rule or code_rule.rule
        if rule:
            detail["rule"] = rule
        return ItemResult(
            unit_id,
            False,
            code=exc.code,
            message=exc.message,
            retryable=isinstance(exc, RetryableError),
            detail=detail,
        )

    async def _each(
        self,
        unit_ids: Sequence[str],
        method: str,
        action: Callable[[str], Awaitable[ItemResult]],
    ) -> list[ItemResult]:
        """Run ``action`` per unit in order. AuthenticationError aborts the call; after an
        exhausted RetryableError the remaining units are reported NOT_ATTEMPTED (retryable)."""
        results: list[ItemResult] = []
        outage: RetryableError | None = None
        for unit_id in unit_ids:
            if outage is not None:
                results.append(
                    ItemResult(unit_id, False, "NOT_ATTEMPTED", outage.message, retryable=True)
                )
                continue
            try:
                results.append(await action(unit_id))
            except AuthenticationError:
                raise
            except RetryableError as exc:
                outage = exc
                results.append(self._failed(unit_id, exc, method))
            except (ConnectorError, RuleViolation) as exc:
                results.append(self._failed(unit_id, exc, method))
        return results

    # --- outbound -------------------------------------------------------------------------------

    async def confirm_orders(
        self,
        unit_ids: Sequence[str],
        estimated_ship_date: date | None = None,
        *,
        delay_type: str | None = None,
        memo: str = "",
    ) -> list[ItemResult]:
        """SetSellerCheckYN_V2 per order: confirm and enter the estimated ship date (order → state
        3, "shipping prepared"; from then on a buyer cancel needs approval, R25). Idempotent:
        repeating it updates the date. ``delay_type`` is a DELAY_TYPES key."""
        method = codes.SET_SELLER_CHECK
        params = {
            "EstShipDt": format_date(estimated_ship_date) if estimated_ship_date else "",
            "DelayType": codes.DELAY_TYPES.get(delay_type, codes.DEFAULT_DELAY_TYPE)
            if delay_type
            else "",
            "DelayMemo": memo[:1000],
        }

        async def confirm(unit_id: str) -> ItemResult:
            await self.qapi(method, {"OrderNo": unit_id, **params})
            return ItemResult(unit_id, True)

        return await self._each(unit_ids, method, confirm)

    async def delay_dispatch(
        self, unit_ids: Sequence[str], due_date: date, reason: str, detail: str
    ) -> list[ItemResult]:
        """Not a Qoo10 operation (R13 is Naver's): enter a later estimated ship date with
        :meth:`confirm_orders` (``delay_type``, ``memo``) instead. Raises
        UnsupportedOperationError."""
        raise UnsupportedOperationError(
            "qoo10 has no dispatch delay (R13 is naverpay only); use confirm_orders with a later "
            "estimated_ship_date and delay_type"
        )

    async def hold_return(self, unit_ids: Sequence[str], *args: Any, **kw: Any) -> list[ItemResult]:
        """Return hold (R14) is Naver-only. Raises UnsupportedOperationError."""
        raise UnsupportedOperationError("qoo10 has no return hold (R14 is naverpay only)")

    async def release_return_hold(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """Raises UnsupportedOperationError (no return hold on Qoo10)."""
        raise UnsupportedOperationError("qoo10 has no return hold (R14 is naverpay only)")

    async def approve_return(self, unit_ids: Sequence[str]) -> list[ItemResult]:
        """No QAPI method approves a return (qoo10.md §8). Raises UnsupportedOperationError."""
        raise UnsupportedOperationError("qoo10 QAPI has no return approval; use J-QSM")
