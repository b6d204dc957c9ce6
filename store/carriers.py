"""Carriers and their codes on each channel (one table: change it here when a code drifts).

The number rules (R18, R28) live in :mod:`store.invoices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Carrier(StrEnum):
    CJ = "CJ"  # CJ대한통운
    EPOST = "EPOST"  # 우체국택배
    HANJIN = "HANJIN"
    LOTTE = "LOTTE"  # 롯데택배 (ex-현대)
    LOGEN = "LOGEN"  # 로젠택배
    ILYANG = "ILYANG"
    KDEXP = "KDEXP"  # 경동택배
    DAESIN = "DAESIN"
    EMS = "EMS"
    YAMATO = "YAMATO"  # Qoo10 JP
    SAGAWA = "SAGAWA"
    JAPANPOST = "JAPANPOST"
    ETC = "ETC"  # R28: quick service / visit pickup / other


@dataclass(frozen=True)
class CarrierCodes:
    naverpay: str | None
    qoo10: str | None
    goodsflow: str | None


#: Per-channel carrier codes. Naver: spec naverpay.md §5.8; Goodsflow v1: carriers.md §4;
#: Qoo10 JP ``ShippingCorp`` takes the carrier's display name (qoo10.md).
CARRIER_CODES: dict[Carrier, CarrierCodes] = {
    Carrier.CJ: CarrierCodes("CJGLS", "CJ대한통운", "KOREX"),
    Carrier.EPOST: CarrierCodes("EPOST", "우체국택배", "EPOST"),
    Carrier.HANJIN: CarrierCodes("HANJIN", "한진택배", "HANJIN"),
    Carrier.LOTTE: CarrierCodes("HYUNDAI", "롯데택배", "LOTTE"),
    Carrier.LOGEN: CarrierCodes("KGB", "로젠택배", "LOGEN"),
    Carrier.ILYANG: CarrierCodes("ILYANG", "일양로지스", "ILYANG"),
    Carrier.KDEXP: CarrierCodes("KDEXP", "경동택배", None),
    Carrier.DAESIN: CarrierCodes("DAESIN", "대신택배", None),
    Carrier.EMS: CarrierCodes("EMS", "EMS", None),
    Carrier.YAMATO: CarrierCodes(None, "ヤマト運輸", None),
    Carrier.SAGAWA: CarrierCodes(None, "佐川急便", None),
    Carrier.JAPANPOST: CarrierCodes(None, "日本郵便", None),
    Carrier.ETC: CarrierCodes("CH1", "その他", None),
}


class UnknownCarrierCodeError(ValueError):
    """A channel code that maps to no known carrier."""


def channel_code(carrier: Carrier, channel: str) -> str:
    """The carrier's code on ``channel`` ('naverpay' | 'qoo10' | 'goodsflow')."""
    code = getattr(CARRIER_CODES[carrier], channel)
    if code is None:
        raise UnknownCarrierCodeError(f"{carrier} has no code on {channel}")
    return str(code)


def from_channel_code(code: str, channel: str) -> Carrier:
    """The carrier behind ``code`` on ``channel``; raises UnknownCarrierCodeError."""
    for carrier, codes in CARRIER_CODES.items():
        if getattr(codes, channel) == code:
            return carrier
    raise UnknownCarrierCodeError(f"unknown {channel} carrier code {code!r}")
