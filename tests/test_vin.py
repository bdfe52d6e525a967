"""VIN rules engine: check digits, grammar, normalisation, policy, decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import vin

# Real VINs with published check digits: NHTSA's worked example in 49 CFR 565
# guidance, a widely cited Honda Accord, and the all-ones test VIN.
REAL_VALID = ["1M8GDM9AXKP042788", "1HGCM82633A004352", "11111111111111111"]
# European VINs carry no check digit (VW's ZZZ filler, Porsche example).
EUROPEAN = ["WVWZZZ1JZXW000001", "WP0ZZZ99ZTS392124"]


@pytest.mark.parametrize("v", REAL_VALID)
def test_real_vins_have_valid_check_digits(v: str) -> None:
    """Published VINs must pass: a wrong table or weight would fail here."""
    assert vin.check_digit(v) == v[8]
    assert vin.checksum_valid(v)
    assert vin.validate(v, "required").valid


def test_nhtsa_example_check_digit_is_x() -> None:
    """The NHTSA example exercises remainder 10 -> 'X'."""
    assert vin.weighted_sum("1M8GDM9AXKP042788") % 11 == 10
    assert vin.check_digit("1M8GDM9AXKP042788") == "X"


@pytest.mark.parametrize(
    ("corrupted", "expected"),
    [("1M8GDM9A1KP042788", "X"), ("1M8GDM9AXKP042789", None), ("1HGCM82633A004353", None)],
)
def test_corrupted_vins_fail(corrupted: str, expected: str | None) -> None:
    """A corrupted check digit or serial must be caught and the error must say what was due."""
    result = vin.validate(corrupted, "required")
    assert not result.valid
    assert not result.checksum_valid
    assert any("check digit expected" in e for e in result.errors)
    if expected:
        assert f"expected {expected!r}" in result.errors[0]


@pytest.mark.parametrize("v", EUROPEAN)
def test_european_vin_valid_under_auto_not_required(v: str) -> None:
    """Most European VINs have no check digit: auto accepts, required rejects."""
    auto = vin.validate(v, "auto")
    assert auto.valid and not auto.checksum_valid and not auto.checksum_required
    assert not vin.validate(v, "required").valid
    assert vin.validate(v, "off").valid


def test_auto_requires_checksum_for_north_america_and_china() -> None:
    """auto must keep the check digit mandatory where the region mandates it."""
    assert vin.checksum_required("1HGCM82633A004352", "auto")
    assert vin.checksum_required("LSVAA4182E2123456", "auto")
    assert not vin.checksum_required("JH4KA7561PC008269", "auto")
    assert not vin.validate("1HGCM82633A004353", "auto").valid


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("1HGCM82633A00435", "wrong length: 16"),
        ("1HGCM82633A0043521", "wrong length: 18"),
        ("1HGCM82633AO04352", "illegal character 'O' at position 12"),
        ("1HGCM8263UA004352", "not allowed at position 10"),
        ("1HGCM8263ZA004352", "not allowed at position 10"),
        ("1HGCM82630A004352", "not allowed at position 10"),
        ("1HGCM82633A00435!", "illegal character '!' at position 17"),
    ],
)
def test_grammar_errors_name_the_problem(bad: str, needle: str) -> None:
    """Errors must be specific enough for an installer to act on."""
    result = vin.validate(bad, "off")
    assert not result.valid
    assert any(needle in e for e in result.errors), result.errors


def test_position_rules_are_data() -> None:
    """A decoder reads the rules as sets; position 10 excludes U, Z and 0."""
    assert len(vin.POSITION_RULES) == 17
    year = vin.POSITION_RULES[9].allowed
    assert not {"U", "Z", "0"} & year
    assert vin.allowed_chars(8, checksum=True) == frozenset("0123456789X")
    assert vin.allowed_chars(8, checksum=False) == vin.ALPHABET_SET
    assert len(vin.ALPHABET) == 33 and not set("IOQ") & vin.ALPHABET_SET


@pytest.mark.parametrize(
    ("raw", "expected", "change"),
    [
        ("*1M8GDM9AXKP042788*", "1M8GDM9AXKP042788", "'*' delimiters"),
        ("I1M8GDM9AXKP042788", "1M8GDM9AXKP042788", "import marker"),
        ("1m8 gdm9-axkp042788", "1M8GDM9AXKP042788", "separators"),
        ("1M8GDM9AXKPO42788", "1M8GDM9AXKP042788", "position 12: O->0"),
        ("1HGCM82633AOO4352", "1HGCM82633A004352", "O->0"),
        ("IM8GDM9AXKP042788", "1M8GDM9AXKP042788", "position 1: I->1"),
        ("1M8GDM9AXKP04278Q", "1M8GDM9AXKP042780", "Q->0"),
    ],
)
def test_normalize_reports_changes(raw: str, expected: str, change: str) -> None:
    """Normalisation must fix known OCR/barcode artefacts and say what it did."""
    result = vin.normalize(raw)
    assert result.text == expected
    assert any(change in c for c in result.changes), result.changes


def test_normalize_leaves_clean_vin_alone() -> None:
    """A clean VIN must come back unchanged with no reported changes."""
    assert vin.normalize("1M8GDM9AXKP042788") == vin.Normalized("1M8GDM9AXKP042788", ())


def test_decode_fields() -> None:
    """Messages carry WMI, country, region, manufacturer and model-year candidates."""
    d = vin.decode("1HGCM82633A004352")
    assert d["wmi"] == "1HG"
    assert d["country"] == "United States"
    assert d["region"] == "North America"
    assert d["manufacturer"] == "Honda"
    assert 2003 in d["model_years"]
    assert vin.decode("WVWZZZ1JZXW000001")["manufacturer"] == "Volkswagen"
    assert vin.model_years("1HGCM82633A004352", latest=2040) == [2033, 2003]


vin_chars = st.sampled_from(vin.ALPHABET)
vin_bodies = st.lists(vin_chars, min_size=17, max_size=17).map("".join)


@st.composite
def valid_vins(draw: st.DrawFn) -> str:
    body = draw(vin_bodies)
    body = body[:9] + draw(st.sampled_from(vin.MODEL_YEAR_CODES)) + body[10:]
    return body[:8] + vin.check_digit(body) + body[9:]


@given(valid_vins(), st.integers(0, 16), vin_chars)
def test_single_substitution_with_different_value_fails(v: str, pos: int, c: str) -> None:
    """Replacing one character by one of a different value breaks the check digit.

    Weights are nonzero and coprime with 11 everywhere but position 9, so any
    change in transliteration value must change the remainder.
    """
    assert vin.checksum_valid(v)
    old = v[pos]

    def value(ch: str) -> int:
        return 10 if ch == "X" and pos == 8 else vin.TRANSLITERATION[ch]

    if value(c) == value(old):
        return
    if pos == 8 and c not in vin.CHECK_DIGIT_CHARS:
        return
    mutated = v[:pos] + c + v[pos + 1 :]
    assert not vin.checksum_valid(mutated)


@given(st.text(alphabet=st.sampled_from(vin.ALPHABET + "IOQ*- .:abcxyz"), max_size=30))
def test_normalize_is_idempotent(text: str) -> None:
    """Normalising twice must equal normalising once, with nothing more changed."""
    once = vin.normalize(text)
    twice = vin.normalize(once.text)
    assert twice.text == once.text
    assert twice.changes == ()


def test_known_wmi_uses_vininfo_table() -> None:
    """Unchecked OCR reads must name a known maker: real WMIs pass, label words do not."""
    assert vin.known_wmi("WVWZZZ1JZXW000001")  # Volkswagen, three characters
    assert vin.known_wmi("1HGCM82633A004352")  # Honda, listed by its two-character prefix
    assert not vin.known_wmi("GVWR2247KG4954LBJ")  # a GVWR line forced into 17 characters
    assert not vin.known_wmi("V1X7RTY9AG369972N")
