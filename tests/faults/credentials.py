"""Distinctive credentials for the fault tests and the scan that proves they never leak."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field

import bcrypt


@dataclass(frozen=True)
class Secrets:
    """Distinctive, non-default credential values (S: never logged / dead-lettered)."""

    naverpay_client_secret: str
    qoo10_api_key: str
    qoo10_password: str
    goodsflow_api_key: str

    @classmethod
    def fresh(cls) -> Secrets:
        tag = secrets.token_hex(6)
        return cls(
            naverpay_client_secret=bcrypt.gensalt(rounds=4).decode(),
            qoo10_api_key=f"QK-fault-{tag}-{secrets.token_hex(8)}",
            qoo10_password=f"QP-fault-{tag}-{secrets.token_hex(8)}",
            goodsflow_api_key=f"GK-fault-{tag}-{secrets.token_hex(8)}",
        )

    def env(self) -> dict[str, str]:
        return {
            "NAVERPAY_CLIENT_SECRET": self.naverpay_client_secret,
            "QOO10_API_KEY": self.qoo10_api_key,
            "QOO10_PASSWORD": self.qoo10_password,
            "GOODSFLOW_API_KEY": self.goodsflow_api_key,
        }

    def needles(self) -> dict[str, bytes]:
        """What must never appear: each value, and the bcrypt salt body on its own."""
        out = {k.lower(): v.encode() for k, v in self.env().items()}
        out["naverpay_client_secret_salt"] = self.naverpay_client_secret[7:].encode()
        return out


@dataclass
class SecretScan:
    """Accumulates where each credential value was found (by name, never the value)."""

    needles: dict[str, bytes]
    found: list[str] = field(default_factory=list)
    scanned: Counter[str] = field(default_factory=Counter)

    def look(self, where: str, blob: bytes) -> None:
        self.scanned[where] += len(blob)
        for name, value in self.needles.items():
            if value in blob:
                self.found.append(f"{name} in {where}")

    def assert_clean(self) -> dict[str, int]:
        assert not self.found, f"credential values leaked: {sorted(set(self.found))}"
        return dict(self.scanned)
