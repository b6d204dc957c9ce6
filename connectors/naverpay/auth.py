"""Naver Commerce API authentication: the bcrypt signature and the cached OAuth2 token.

* :func:`client_secret_sign` — ``base64(bcrypt(client_id + "_" + timestamp_ms, salt=secret))``
  (spec §2.2). The issued secret *is* the bcrypt salt; no salt is ever generated.
* :class:`TokenProvider` — one cached client-credentials token per (client_id, type, account),
  requested with a form-urlencoded body exactly as documented (§2.1, §2.5: query-string or JSON
  token calls get the whole app penalised). Promises:

  - at most one token request runs at a time; concurrent callers share its result;
  - the token is renewed before it expires (when less than ``renew_before`` seconds, capped at
    half the lifetime, remain) and on demand after a 401 (:meth:`TokenProvider.invalidate`);
  - clock skew: the signing timestamp is ``clock() + offset - sign_lag``; when the token
    endpoint refuses the request (400) and the server's own time (body ``timestamp`` or the
    ``Date`` header) differs from ours by more than a second, the offset is learned and the
    request is repeated once;
  - failures raise :mod:`connectors.errors` errors (``AuthenticationError`` for refusals) whose
    text never contains the secret, the signature or a token.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import bcrypt
import httpx
from pydantic import SecretStr

from connectors.errors import AuthenticationError, ConnectorError
from connectors.naverpay.dates import parse_opt
from connectors.naverpay.errors import error_from_response, json_body

log = logging.getLogger(__name__)

#: Renew when less than this many seconds remain (Naver re-issues a new token below 30 min).
RENEW_BEFORE_SECONDS = 1800.0
#: Sign with a timestamp slightly in the past: Naver refuses timestamps later than its clock.
SIGN_LAG_SECONDS = 1.0
#: Skew below this is not worth correcting.
SKEW_TOLERANCE_SECONDS = 1.0

Clock = Callable[[], float]
Sender = Callable[[Callable[[], Awaitable[httpx.Response]]], Awaitable[httpx.Response]]


def client_secret_sign(client_id: str, client_secret: str, timestamp_ms: int) -> str:
    """The documented signature; ``ValueError`` when the secret is not a bcrypt salt."""
    password = f"{client_id}_{timestamp_ms}".encode()
    try:
        hashed = bcrypt.hashpw(password, client_secret.encode())
    except ValueError:
        raise ValueError("client secret is not a valid bcrypt salt") from None
    return base64.b64encode(hashed).decode("ascii")


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # on the provider's clock (epoch seconds)
    lifetime: float


class TokenProvider:
    """Issues and caches the access token. See the module docstring for the promises."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: str,
        *,
        token_path: str = "/v1/oauth2/token",
        token_type: str = "SELF",
        seller_account_id: str | None = None,
        clock: Clock | None = None,
        renew_before: float = RENEW_BEFORE_SECONDS,
        sign_lag: float = SIGN_LAG_SECONDS,
        send: Sender | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        if token_type not in ("SELF", "SELLER"):
            raise ValueError("token_type is SELF or SELLER")
        if token_type == "SELLER" and not seller_account_id:
            raise ValueError("a SELLER token needs seller_account_id")
        self.http = http
        self.client_id = client_id
        self._secret = SecretStr(client_secret)  # never in repr() or vars() dumps
        self.token_path = token_path
        self.token_type = token_type
        self.seller_account_id = seller_account_id if token_type == "SELLER" else None
        self.clock = clock or time.time
        self.renew_before = renew_before
        self.sign_lag = sign_lag
        self.offset = 0.0  # server time - our clock, learned from refusals
        self.issued = 0
        self._send = send
        self._on_token = on_token
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    @property
    def cache_key(self) -> tuple[str, str, str | None]:
        return (self.client_id, self.token_type, self.seller_account_id)

    def _fresh(self, token: Token | None) -> bool:
        if token is None:
            return False
        margin = min(self.renew_before, token.lifetime / 2)
        return token.expires_at - self.clock() > margin

    async def get(self) -> str:
        """A valid access token (cached, renewed ahead of expiry)."""
        if self._fresh(self._token):
            assert self._token is not None
            return self._token.value
        async with self._lock:
            if not self._fresh(self._token):
                self._token = await self._request_token()
            assert self._token is not None
            return self._token.value

    async def invalidate(self, value: str) -> None:
        """Forget ``value`` (after a 401) so the next :meth:`get` asks for a new token; a token
        already replaced by another caller is left alone."""
        async with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def form(self, timestamp_ms: int) -> dict[str, str]:
        """The token request's form fields (exactly the documented set)."""
        fields = {
            "client_id": self.client_id,
            "timestamp": str(timestamp_ms),
            "grant_type": "client_credentials",
            "client_secret_sign": client_secret_sign(
                self.client_id, self._secret.get_secret_value(), timestamp_ms
            ),
            "type": self.token_type,
        }
        if self.seller_account_id:
            fields["account_id"] = self.seller_account_id
        return fields

    def _timestamp_ms(self) -> int:
        return int((self.clock() + self.offset - self.sign_lag) * 1000)

    async def _post(self) -> httpx.Response:
        # data= makes httpx send application/x-www-form-urlencoded; nothing in the query string.
        form = self.form(self._timestamp_ms())

        async def once() -> httpx.Response:
            return await self.http.post(self.token_path, data=form)

        if self._send is not None:
            return await self._send(once)
        return await once()

    async def _request_token(self) -> Token:
        for attempt in (1, 2):
            sent_at = self.clock()
            resp = await self._post()
            if resp.status_code == 200:
                return self._accept(resp, sent_at)
            if resp.status_code == 400 and attempt == 1 and self._learn_skew(resp, sent_at):
                log.warning(
                    "naverpay token refused; clock skew of %.1fs learned, signing again",
                    self.offset,
                )
                continue
            err = error_from_response(resp, "token", redact=self._redact)
            if resp.status_code == 400:
                raise AuthenticationError(
                    err.message, code=err.code, trace_id=err.trace_id, status=400
                )
            raise err
        raise AssertionError("unreachable")  # pragma: no cover

    def _accept(self, resp: httpx.Response, sent_at: float) -> Token:
        body = json_body(resp)
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise ConnectorError("token answer without access_token", status=resp.status_code)
        try:
            lifetime = float(body.get("expires_in", 10800))
        except (TypeError, ValueError):
            lifetime = 10800.0
        if self._on_token is not None:
            self._on_token(value)
        self.issued += 1
        log.info("naverpay token issued (expires in %.0fs)", lifetime)
        return Token(value, sent_at + lifetime, lifetime)

    def _learn_skew(self, resp: httpx.Response, sent_at: float) -> bool:
        server = _server_time(resp)
        if server is None:
            return False
        now = (sent_at + self.clock()) / 2
        skew = server - now
        if abs(skew - self.offset) <= SKEW_TOLERANCE_SECONDS:
            return False
        self.offset = skew
        return True

    def _redact(self, text: str) -> str:
        secret = self._secret.get_secret_value()
        return text.replace(secret, "***") if secret else text


def _server_time(resp: httpx.Response) -> float | None:
    """The server's clock from the error body's ``timestamp`` or the ``Date`` header."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        when = parse_opt(body.get("timestamp"))
        if when is not None:
            return when.timestamp()
    date = resp.headers.get("Date")
    if date:
        try:
            return parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return None
    return None
