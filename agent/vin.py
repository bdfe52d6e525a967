"""VIN rules: the single source of truth for every other module.

Covers ISO 3779 / 49 CFR 565: the 33-character alphabet, transliteration
values, position weights, the check digit at position 9, per-position rules
(as data a decoder can use), OCR-text normalisation and a region-aware
checksum policy.  Manufacturer, country and model-year decoding comes from
``vininfo`` rather than hand-written tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

VIN_LENGTH = 17

#: Legal VIN characters; I, O and Q are excluded because they read as 1 and 0.
#: The order is also the class order of the recognizer's output.
ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
ALPHABET_SET = frozenset(ALPHABET)
#: The letters no VIN holds.
NON_VIN_LETTERS = "IOQ"

#: 49 CFR 565.15(b) Table IV: value assigned to each character.
TRANSLITERATION: dict[str, int] = {
    **{d: int(d) for d in "0123456789"},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}  # fmt: skip

#: 49 CFR 565.15(c) Table V: weight of each of the 17 positions.
WEIGHTS: tuple[int, ...] = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

#: 0-based index of the check digit (position 9).
CHECK_DIGIT_INDEX = 8
CHECK_DIGIT_CHARS = "0123456789X"

#: 0-based index of the model-year code (position 10).
MODEL_YEAR_INDEX = 9
#: Model-year codes cycle every 30 years starting at 1980 (A) and 2010 (A).
MODEL_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"

#: First WMI characters whose regions mandate a valid check digit under
#: ``auto``: North America (1-5) and mainland China (L).
CHECKSUM_REGIONS = frozenset("12345L")

#: OCR and barcode confusions that are unambiguous because the target
#: character cannot occur in a VIN.
CONFUSIONS = {"O": "0", "I": "1", "Q": "0"}


class ChecksumPolicy(StrEnum):
    """When a valid check digit is needed for a VIN to be accepted."""

    REQUIRED = "required"
    AUTO = "auto"
    OFF = "off"


@dataclass(frozen=True)
class PositionRule:
    """Characters allowed at one 1-based position, and why."""

    position: int
    allowed: frozenset[str]
    reason: str


def _rules() -> tuple[PositionRule, ...]:
    rules = []
    for pos in range(1, VIN_LENGTH + 1):
        if pos == CHECK_DIGIT_INDEX + 1:
            # Without a required checksum, position 9 is free text (e.g. Z fillers).
            rules.append(PositionRule(pos, ALPHABET_SET, "check digit when required"))
        elif pos == MODEL_YEAR_INDEX + 1:
            rules.append(
                PositionRule(pos, frozenset(MODEL_YEAR_CODES), "model year is never U, Z or 0")
            )
        else:
            rules.append(PositionRule(pos, ALPHABET_SET, "any VIN character"))
    return tuple(rules)


#: Per-position grammar, index 0 = position 1.  A decoder restricts each slot
#: to ``allowed``; the check-digit slot is further restricted to
#: :data:`CHECK_DIGIT_CHARS` when :func:`checksum_required` says so.
POSITION_RULES: tuple[PositionRule, ...] = _rules()


def allowed_chars(index: int, *, checksum: bool) -> frozenset[str]:
    """Characters allowed at 0-based ``index``, given whether a checksum applies."""
    if index == CHECK_DIGIT_INDEX and checksum:
        return frozenset(CHECK_DIGIT_CHARS)
    return POSITION_RULES[index].allowed


def weighted_sum(vin: str) -> int:
    """Sum of transliteration x weight over all positions except the check digit."""
    return sum(TRANSLITERATION[c] * w for c, w in zip(vin, WEIGHTS, strict=True))


def check_digit(vin: str) -> str:
    """The check digit ('0'-'9' or 'X') a 17-character VIN should carry.

    Position 9 itself has weight 0, so whatever is there is ignored.
    Raises ``ValueError`` on a wrong length or an illegal character.
    """
    if len(vin) != VIN_LENGTH:
        raise ValueError(f"a VIN has {VIN_LENGTH} characters, got {len(vin)}")
    bad = [c for c in vin if c not in ALPHABET_SET]
    if bad:
        raise ValueError(f"illegal VIN character {bad[0]!r}")
    remainder = weighted_sum(vin) % 11
    return "X" if remainder == 10 else str(remainder)


def checksum_valid(vin: str) -> bool:
    """True when ``vin`` is 17 legal characters with a correct check digit."""
    try:
        return check_digit(vin) == vin[CHECK_DIGIT_INDEX]
    except ValueError:
        return False


def checksum_required(vin: str, policy: ChecksumPolicy | str = ChecksumPolicy.AUTO) -> bool:
    """Whether ``policy`` demands a valid check digit for this VIN."""
    policy = ChecksumPolicy(policy)
    if policy is ChecksumPolicy.REQUIRED:
        return True
    if policy is ChecksumPolicy.OFF:
        return False
    return bool(vin) and vin[0] in CHECKSUM_REGIONS


@dataclass(frozen=True)
class Normalized:
    """Result of :func:`normalize`: the cleaned text and what was changed."""

    text: str
    changes: tuple[str, ...] = ()


_SEPARATORS = " \t\r\n-_.:/|"


def normalize(text: str) -> Normalized:
    """Clean OCR or barcode text into a VIN candidate, reporting each change.

    Upper-cases, drops separators and ``*`` delimiters (Code 39 start/stop),
    drops a leading ``I`` import marker on an 18-character Code 39 payload,
    and maps O->0, I->1, Q->0.  Idempotent: a second call changes nothing.
    """
    changes: list[str] = []
    s = text.upper()
    if s != text:
        changes.append("upper-cased")
    stripped = "".join(c for c in s if c not in _SEPARATORS)
    if stripped != s:
        changes.append("removed spaces and separators")
    s = stripped
    if "*" in s:
        s = s.replace("*", "")
        changes.append("removed '*' delimiters")
    if len(s) == VIN_LENGTH + 1 and s[0] == "I":
        s = s[1:]
        changes.append("removed leading 'I' import marker")
    mapped = []
    for i, c in enumerate(s):
        if c in CONFUSIONS:
            changes.append(f"position {i + 1}: {c}->{CONFUSIONS[c]}")
            mapped.append(CONFUSIONS[c])
        else:
            mapped.append(c)
    return Normalized("".join(mapped), tuple(changes))


@dataclass
class VinCheck:
    """Verdict on one VIN under a checksum policy."""

    vin: str
    valid: bool
    checksum_valid: bool
    checksum_required: bool
    errors: list[str] = field(default_factory=list)
    decoded: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "vin": self.vin,
            "valid": self.valid,
            "checksum_valid": self.checksum_valid,
            "checksum_required": self.checksum_required,
            "errors": list(self.errors),
            "decoded": self.decoded,
        }


def grammar_errors(vin: str) -> list[str]:
    """Reasons ``vin`` breaks the VIN grammar, check digit aside; empty if none."""
    errors = []
    if len(vin) != VIN_LENGTH:
        errors.append(f"wrong length: {len(vin)} characters, a VIN has {VIN_LENGTH}")
    for i, c in enumerate(vin[:VIN_LENGTH]):
        rule = POSITION_RULES[i]
        if c not in ALPHABET_SET:
            hint = f" (did you mean {CONFUSIONS[c]!r}?)" if c in CONFUSIONS else ""
            errors.append(f"illegal character {c!r} at position {i + 1}{hint}")
        elif c not in rule.allowed:
            errors.append(f"character {c!r} not allowed at position {i + 1}: {rule.reason}")
    return errors


def validate(
    vin: str, policy: ChecksumPolicy | str = ChecksumPolicy.AUTO, *, decode_info: bool = True
) -> VinCheck:
    """Check ``vin`` (taken as given, not normalised) against the rules and policy."""
    errors = grammar_errors(vin)
    required = checksum_required(vin, policy)
    valid_sum = not errors and checksum_valid(vin)
    if not errors and not valid_sum:
        expected = check_digit(vin)
        msg = f"check digit expected {expected!r} got {vin[CHECK_DIGIT_INDEX]!r} at position 9"
        if required:
            errors.append(msg)
    decoded = decode(vin) if decode_info and not grammar_errors(vin) else None
    return VinCheck(
        vin=vin,
        valid=not errors,
        checksum_valid=valid_sum,
        checksum_required=required,
        errors=errors,
        decoded=decoded,
    )


def region_code_name(first: str) -> str | None:
    """Continent by ISO 3780 first character, via vininfo's table."""
    from vininfo.dicts import REGIONS

    for chars, title in REGIONS.items():
        if first in chars:
            return str(title)
    return None


def model_years(vin: str, *, latest: int | None = None) -> list[int]:
    """Candidate model years for position 10, newest first.

    The code repeats every 30 years, so every cycle up to next year is a
    candidate; the manufacturer's own rules (e.g. position 7 for North
    American light vehicles) are left to the consumer.
    """
    import datetime as _dt

    code = vin[MODEL_YEAR_INDEX] if len(vin) > MODEL_YEAR_INDEX else ""
    if code not in MODEL_YEAR_CODES:
        return []
    latest = latest or _dt.datetime.now(tz=_dt.UTC).year + 1
    year = 1980 + MODEL_YEAR_CODES.index(code)
    years = []
    while year <= latest:
        years.append(year)
        year += len(MODEL_YEAR_CODES)
    return sorted(years, reverse=True)


@lru_cache(maxsize=1)
def _wmi_table() -> frozenset[str]:
    from vininfo.dicts.wmi import WMI

    return frozenset(str(k).upper() for k in WMI)


def known_wmi(vin: str) -> bool:
    """Whether the VIN's manufacturer code is in vininfo's WMI table (3 characters, or the
    2-character prefix it lists for some makers)."""
    table = _wmi_table()
    return vin[:3] in table or vin[:2] in table


@lru_cache(maxsize=4096)
def _vininfo(vin: str) -> tuple[str | None, str | None]:
    from vininfo import Vin
    from vininfo.exceptions import VininfoException

    try:
        info = Vin(vin)
        manufacturer = info.manufacturer
        country = info.country
    except (VininfoException, KeyError, ValueError, AttributeError) as exc:
        # vininfo's brand extractors are best-effort; a miss must not lose the read.
        logger.debug("vininfo could not decode %s: %s", vin, exc)
        return None, None
    return (None if manufacturer in (None, "", "Unsupported") else str(manufacturer)), (
        str(country) if country else None
    )


def decode(vin: str) -> dict[str, Any]:
    """WMI, country, region, manufacturer and candidate model years of a VIN."""
    manufacturer, country = _vininfo(vin) if len(vin) == VIN_LENGTH else (None, None)
    return {
        "wmi": vin[:3],
        "vds": vin[3:9],
        "vis": vin[9:],
        "country": country,
        "region": region_code_name(vin[:1]) if vin else None,
        "manufacturer": manufacturer,
        "model_years": model_years(vin),
        "checksum_region": bool(vin) and vin[0] in CHECKSUM_REGIONS,
    }
