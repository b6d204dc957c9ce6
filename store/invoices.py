"""Invoice (waybill / tracking number) validity: R05, R18, R28. Pure code, no I/O.

One table, :data:`RULES`, holds every carrier's number rule, following ``specs/carriers.md`` §5
("Recommended validator"). Where the sources know no check digit, only characters and length
are checked; a check digit is never guessed. :data:`CONFIDENCE` says, per carrier, which parts
of the rule are confirmed by two independent sources and which are single-source or guessed,
so the choice to make a weak check a hard reject (or only a warning) is visible in one place.

Promises:

* :func:`validate_invoice` returns the normalised number or raises
  :class:`store.errors.InvalidInvoiceError` naming the carrier and the failed check
  (``empty``, ``characters``, ``length``, ``check_digit``, ``format``, ``max_length``).
* :func:`inspect_invoice` never raises: it returns every error and warning found.
* Quick-service and visit-pickup invoices and carrier ``ETC`` skip the carrier rules (R28) but
  still need a non-empty number that fits the store (≤ 40 characters).
* :func:`generate_valid_number` only produces numbers :func:`validate_invoice` accepts without
  a warning (used by the Goodsflow sandbox and the property tests).
* :func:`check_invoice_allowed` / :func:`check_waybill_allowed` are the R05 / R12 guards.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from enum import StrEnum

from store.carriers import Carrier
from store.domain import InvoiceKind, LineStatus
from store.errors import HoldActiveError, InvalidInvoiceError, InvoiceNotAllowedError

#: The store keeps at most this many characters (``invoices.tracking_number``).
MAX_NUMBER_LENGTH = 40

#: R28: invoice kinds whose numbers are free-form (the carrier rules are not applied).
ARBITRARY_KINDS = frozenset({InvoiceKind.QUICK, InvoiceKind.VISIT_PICKUP})

_SEPARATORS = re.compile(r"[\s\-]+")
_S10 = re.compile(r"^([A-Z]{2})(\d{8})(\d)([A-Z]{2})$")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


class CheckDigit(StrEnum):
    NONE = "none"  # no check digit known: length and characters only
    MOD7 = "mod7"  # int(all but the last digit) mod 7 == last digit
    S10 = "s10"  # UPU S10 (international registered / EMS)


class Confidence(StrEnum):
    """How sure the sources are (carriers.md confidence H / M / L)."""

    CONFIRMED = "confirmed"  # two or more independent sources agree
    PARTIAL = "partial"  # one source, or empirical samples only
    GUESSED = "guessed"  # a single weak source or an inference


@dataclass(frozen=True)
class CarrierRule:
    """The number rule of one carrier.

    ``lengths`` are accepted; ``warn_lengths`` are accepted with a warning (formats the sources
    mention without a rule). ``check`` applies to the lengths in ``check_lengths``; when
    ``check_is_hard`` is false a failed check is only a warning.
    """

    lengths: frozenset[int]
    check: CheckDigit = CheckDigit.NONE
    check_lengths: frozenset[int] = frozenset()
    check_is_hard: bool = True
    warn_lengths: frozenset[int] = frozenset()
    alphabet: str = "digits"  # "digits" | "s10"


@dataclass(frozen=True)
class RuleConfidence:
    length: Confidence
    check_digit: Confidence | None  # None: no check digit is applied
    sources: str


def _fs(*values: int) -> frozenset[int]:
    return frozenset(values)


_LOOSE = frozenset(range(8, 15))  # carriers.md §5 "others: digits, 8-14 long"

#: carriers.md §5, one row per carrier. ETC has no rule (R28).
RULES: dict[Carrier, CarrierRule] = {
    Carrier.LOTTE: CarrierRule(_fs(12), CheckDigit.MOD7, _fs(12), warn_lengths=_fs(10, 13)),
    Carrier.HANJIN: CarrierRule(_fs(10, 12, 14), CheckDigit.MOD7, _fs(10, 12)),
    Carrier.LOGEN: CarrierRule(_fs(11), CheckDigit.MOD7, _fs(11), check_is_hard=False),
    Carrier.CJ: CarrierRule(_fs(10, 12)),
    Carrier.EPOST: CarrierRule(_fs(13)),
    Carrier.EMS: CarrierRule(_fs(13), CheckDigit.S10, _fs(13), alphabet="s10"),
    Carrier.ILYANG: CarrierRule(_fs(10), warn_lengths=_LOOSE - _fs(10)),
    Carrier.KDEXP: CarrierRule(_fs(13), warn_lengths=_LOOSE - _fs(13)),
    Carrier.DAESIN: CarrierRule(_fs(12, 13), warn_lengths=_LOOSE - _fs(12, 13)),
    Carrier.YAMATO: CarrierRule(_fs(12), CheckDigit.MOD7, _fs(12)),
    Carrier.SAGAWA: CarrierRule(_fs(12), CheckDigit.MOD7, _fs(12)),
    Carrier.JAPANPOST: CarrierRule(_fs(12), CheckDigit.MOD7, _fs(12)),
}

_C, _P, _G = Confidence.CONFIRMED, Confidence.PARTIAL, Confidence.GUESSED

#: Which parts of each rule are confirmed (two independent sources) and which are guesses.
CONFIDENCE: dict[Carrier, RuleConfidence] = {
    Carrier.LOTTE: RuleConfidence(_C, _C, "delivery-tracker kr.lotte; Sabangnet helper; samples"),
    Carrier.HANJIN: RuleConfidence(
        _C,
        _C,
        "delivery-tracker v1 (mod 7 for 10/12); Goodsflow doc examples; samples. "
        "10-digit check and 14-digit format: single source",
    ),
    Carrier.LOGEN: RuleConfidence(_C, _P, "length: 3 trackers; mod 7: samples only (warning)"),
    Carrier.CJ: RuleConfidence(_C, None, "10/12 digits in 4 trackers; mod 7 refuted by samples"),
    Carrier.EPOST: RuleConfidence(_C, None, "13 digits in 3 trackers; no check digit found"),
    Carrier.EMS: RuleConfidence(_C, _C, "UPU S10 standard; public S10 validators"),
    Carrier.ILYANG: RuleConfidence(_G, None, "10 digits: one tracker only"),
    Carrier.KDEXP: RuleConfidence(_G, None, "13 digits: one tracker only"),
    Carrier.DAESIN: RuleConfidence(_G, None, "12/13 digits: one tracker only"),
    Carrier.YAMATO: RuleConfidence(_C, _C, "shipping-jp-js README; packtrack fixtures"),
    Carrier.SAGAWA: RuleConfidence(_C, _C, "shipping-jp-js README; packtrack fixtures"),
    Carrier.JAPANPOST: RuleConfidence(_C, _C, "shipping-jp-js README; packtrack code+fixtures"),
    Carrier.ETC: RuleConfidence(_G, None, "R28: free-form, no rule"),
}


@dataclass(frozen=True)
class InvoiceProblem:
    check: str
    message: str


@dataclass(frozen=True)
class InvoiceCheck:
    """Everything :func:`inspect_invoice` found about one number."""

    carrier: Carrier
    kind: InvoiceKind
    number: str
    normalised: str
    errors: tuple[InvoiceProblem, ...] = field(default_factory=tuple)
    warnings: tuple[InvoiceProblem, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> bool:
        return not self.errors


def normalise_number(number: str) -> str:
    """Strip spaces and hyphens and upper-case letters (Goodsflow strips separators too)."""
    return _SEPARATORS.sub("", number).upper()


def mod7_ok(digits: str) -> bool:
    return len(digits) >= 2 and digits.isdigit() and int(digits[:-1]) % 7 == int(digits[-1])


def s10_check_digit(serial: str) -> int:
    """UPU S10 check digit of the 8 serial digits."""
    total = sum(int(d) * w for d, w in zip(serial, _S10_WEIGHTS, strict=True))
    c = 11 - total % 11
    return 0 if c == 10 else 5 if c == 11 else c


def rules_apply(carrier: Carrier, kind: InvoiceKind = InvoiceKind.PARCEL) -> bool:
    """False for R28 invoices (quick service, visit pickup, carrier ETC)."""
    return kind not in ARBITRARY_KINDS and carrier in RULES


def inspect_invoice(
    carrier: Carrier, number: str, kind: InvoiceKind = InvoiceKind.PARCEL
) -> InvoiceCheck:
    """Check ``number`` against ``carrier``'s rule; never raises."""
    errors: list[InvoiceProblem] = []
    warnings: list[InvoiceProblem] = []
    if not rules_apply(carrier, kind):
        free = number.strip()
        if not free:
            errors.append(InvoiceProblem("empty", "an invoice number is required (R28)"))
        elif len(free) > MAX_NUMBER_LENGTH:
            errors.append(InvoiceProblem("max_length", f"at most {MAX_NUMBER_LENGTH} characters"))
        return InvoiceCheck(carrier, kind, number, free, tuple(errors), ())
    norm = normalise_number(number)
    rule = RULES[carrier]
    if not norm:
        errors.append(InvoiceProblem("empty", "an invoice number is required"))
    elif rule.alphabet == "s10":
        _inspect_s10(norm, errors, warnings)
    elif not norm.isdigit():
        errors.append(InvoiceProblem("characters", "digits only (spaces and hyphens allowed)"))
    else:
        _inspect_digits(rule, norm, errors, warnings)
    return InvoiceCheck(carrier, kind, number, norm, tuple(errors), tuple(warnings))


def _lengths_text(lengths: frozenset[int]) -> str:
    ordered = sorted(lengths)
    if len(ordered) == 1:
        return str(ordered[0])
    return ", ".join(str(n) for n in ordered[:-1]) + f" or {ordered[-1]}"


def _inspect_digits(
    rule: CarrierRule, norm: str, errors: list[InvoiceProblem], warnings: list[InvoiceProblem]
) -> None:
    n = len(norm)
    if n in rule.warn_lengths:
        warnings.append(
            InvoiceProblem("length", f"{n} digits is not the usual {_lengths_text(rule.lengths)}")
        )
        return
    if n not in rule.lengths:
        errors.append(
            InvoiceProblem("length", f"expected {_lengths_text(rule.lengths)} digits, got {n}")
        )
        return
    if rule.check is CheckDigit.MOD7 and n in rule.check_lengths and not mod7_ok(norm):
        expected = int(norm[:-1]) % 7
        problem = InvoiceProblem(
            "check_digit", f"mod-7 check digit should be {expected}, got {norm[-1]}"
        )
        (errors if rule.check_is_hard else warnings).append(problem)


def _inspect_s10(norm: str, errors: list[InvoiceProblem], warnings: list[InvoiceProblem]) -> None:
    match = _S10.match(norm)
    if match is None:
        errors.append(InvoiceProblem("format", "expected 2 letters, 9 digits, 2 letters (UPU S10)"))
        return
    serial, check, country = match.group(2), int(match.group(3)), match.group(4)
    expected = s10_check_digit(serial)
    if check != expected:
        errors.append(
            InvoiceProblem("check_digit", f"S10 check digit should be {expected}, got {check}")
        )
    if country != "KR":
        warnings.append(InvoiceProblem("format", f"country code {country}, not KR"))


def validate_invoice(carrier: Carrier, number: str, kind: InvoiceKind = InvoiceKind.PARCEL) -> str:
    """The normalised number, or :class:`InvalidInvoiceError` naming the carrier and the check
    (R18). Warnings do not raise. R28 invoices only need a non-empty number."""
    result = inspect_invoice(carrier, number, kind)
    if result.errors:
        first = result.errors[0]
        raise InvalidInvoiceError(str(carrier), first.check, first.message)
    return result.normalised


def generate_valid_number(
    carrier: Carrier, rng: random.Random, *, length: int | None = None
) -> str:
    """A random number that passes ``carrier``'s rule without a warning.

    ``length`` picks one of the rule's accepted lengths (default: the commonest one).
    """
    if carrier not in RULES:
        return "".join(rng.choice(string.digits) for _ in range(length or 8))
    rule = RULES[carrier]
    if rule.alphabet == "s10":
        serial = "".join(rng.choice(string.digits) for _ in range(8))
        prefix = rng.choice(("EE", "EM", "RR", "CP"))
        return f"{prefix}{serial}{s10_check_digit(serial)}KR"
    if length is None:
        length = 12 if 12 in rule.lengths else min(rule.lengths)
    if length not in rule.lengths:
        raise ValueError(f"{carrier} numbers are {_lengths_text(rule.lengths)} digits")
    first = rng.choice("123456789")
    body = first + "".join(rng.choice(string.digits) for _ in range(length - 2))
    if rule.check is CheckDigit.MOD7 and length in rule.check_lengths:
        return body + str(int(body) % 7)
    return body + rng.choice(string.digits)


# --- R05 / R12 guards --------------------------------------------------------------------------
def check_invoice_allowed(line_status: LineStatus) -> None:
    """R05: an invoice may be attached only to a ``READY_TO_SHIP`` line."""
    if line_status is not LineStatus.READY_TO_SHIP:
        raise InvoiceNotAllowedError(
            "R05", f"an invoice can be attached only in READY_TO_SHIP (line is {line_status})"
        )


def check_waybill_allowed(
    order_on_hold: bool, line_status: LineStatus, *, order_id: str = "?"
) -> None:
    """Guard before asking Goodsflow for a waybill.

    Raises :class:`HoldActiveError` (R12) while the order is on delivery hold, else
    :class:`InvoiceNotAllowedError` (R05) unless the line is ``READY_TO_SHIP``.
    """
    if order_on_hold:
        raise HoldActiveError(order_id)
    check_invoice_allowed(line_status)
