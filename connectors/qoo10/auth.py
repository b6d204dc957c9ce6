"""The Qoo10 seller authorization key (SAK, 販売認証キー): obtained once, renewed on refusal.

``CertificationAPI.CreateCertificationKey`` turns the issued API key (sent as the
``GiosisCertificationKey`` header) plus the QSM login (``user_id`` / ``pwd``) into the SAK that
every other call sends in the same header (qoo10.md §2). A password change or expiry invalidates
the SAK; the API then answers -10000 / -90004 / -90005, and the client renews it once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class SellerKeyManager:
    """Holds the current SAK; at most one renewal runs at a time.

    ``obtain`` performs CreateCertificationKey and returns the new SAK (raising
    AuthenticationError when the credentials are refused). ``issued`` lists every SAK seen so the
    client can redact them all.
    """

    def __init__(self, obtain: Callable[[], Awaitable[str]]) -> None:
        self._obtain = obtain
        self._key: str | None = None
        self._lock = asyncio.Lock()
        self.renewals = 0
        self.issued: list[str] = []

    async def current(self) -> str:
        """The SAK in use, obtaining one on first use."""
        if self._key is not None:
            return self._key
        async with self._lock:
            if self._key is None:
                await self._fetch()
            assert self._key is not None
            return self._key

    async def renew(self, stale: str) -> str:
        """Replace ``stale`` with a fresh SAK. When another caller already replaced it, the newer
        key is returned without a second CreateCertificationKey call."""
        async with self._lock:
            if self._key is None or self._key == stale:
                await self._fetch()
                self.renewals += 1
                log.info("qoo10 seller authorization key renewed (renewal %d)", self.renewals)
            assert self._key is not None
            return self._key

    def forget(self) -> None:
        """Drop the cached SAK (the next call obtains a new one)."""
        self._key = None

    async def _fetch(self) -> None:
        key = await self._obtain()
        self.issued.append(key)
        self._key = key
