"""Checksum-constrained decoding: exact against brute force, and the rules hold."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from agent import vin as rules
from agent.vision.decoding import decode, decode_batch

A = rules.ALPHABET


def one_hot_probs(text: str, p: float = 0.97) -> np.ndarray:
    probs = np.full((17, 33), (1 - p) / 32)
    for i, c in enumerate(text):
        probs[i, A.index(c)] = p
    return probs


def sparse_probs(rng: np.random.Generator, n_free: int) -> tuple[np.ndarray, list[list[str]]]:
    """Probabilities where n_free positions have two plausible characters, the rest one.

    Small enough to enumerate every string that carries real mass.
    """
    probs = np.full((17, 33), 1e-9)
    options: list[list[str]] = []
    free = set(rng.choice(17, size=n_free, replace=False).tolist())
    for i in range(17):
        chars = rng.choice(list(A), size=2 if i in free else 1, replace=False).tolist()
        weights = rng.dirichlet(np.ones(len(chars)))
        for c, w in zip(chars, weights, strict=True):
            probs[i, A.index(c)] = w
        options.append(chars)
    return probs, options


def brute_force(
    probs: np.ndarray, options: list[list[str]], policy: str
) -> list[tuple[float, str]]:
    out = []
    for chars in itertools.product(*options):
        s = "".join(chars)
        if rules.grammar_errors(s):
            continue
        if rules.checksum_required(s, policy) and not rules.checksum_valid(s):
            continue
        lp = float(sum(math.log(probs[i, A.index(c)]) for i, c in enumerate(s)))
        out.append((lp, s))
    return sorted(out, reverse=True)


@pytest.mark.parametrize("policy", ["off", "required", "auto"])
@pytest.mark.parametrize("seed", range(12))
def test_decode_matches_brute_force(policy: str, seed: int) -> None:
    """The DP is claimed exact: the best and the k-best must equal enumeration."""
    rng = np.random.default_rng(seed)
    probs, options = sparse_probs(rng, n_free=11)
    expected = brute_force(probs, options, policy)
    got = decode(probs, policy, k=5)
    if not expected:
        return
    assert got.vin == expected[0][1]
    assert got.log_prob == pytest.approx(expected[0][0], abs=1e-6)
    # Ties may order differently; compare the score profile and the membership.
    n = min(5, len(expected))
    assert [c.log_prob for c in got.candidates[:n]] == pytest.approx(
        [lp for lp, _ in expected[:n]], abs=1e-6
    )
    cutoff = expected[min(4, len(expected) - 1)][0] - 1e-9
    assert {c.vin for c in got.candidates[:n]} <= {s for lp, s in expected if lp >= cutoff}


def test_required_fixes_a_wrong_check_digit_at_its_weakest_position() -> None:
    """A misread with low confidence at one character is repaired by the checksum."""
    vin = "1HGCM82633A004352"
    probs = one_hot_probs(vin)
    # The model prefers 8 over 3 at position 12 (a classic 0/8 confusion), weakly.
    probs[11, A.index("0")] = 0.40
    probs[11, A.index("8")] = 0.55
    assert decode(probs, "off").vin == vin[:11] + "8" + vin[12:]
    d = decode(probs, "required")
    assert d.vin == vin
    assert d.raw == vin[:11] + "8" + vin[12:]
    assert d.changed_positions == (12,)
    assert d.checksum_valid and d.checksum_required


def test_model_year_rule_applies_under_every_policy() -> None:
    """Position 10 is never U, Z or 0, even when the model insists."""
    probs = one_hot_probs("WVWZZZ1JZXW000001")
    probs[9] = 1e-6
    probs[9, A.index("Z")] = 0.9
    probs[9, A.index("Y")] = 0.1
    for policy in ("off", "auto", "required"):
        assert decode(probs, policy).vin[9] not in "UZ0"


def test_auto_accepts_european_vin_without_check_digit() -> None:
    """Most European VINs have no check digit: auto keeps the 'Z' filler at position 9."""
    vin = "WVWZZZ1JZXW000001"
    assert not rules.checksum_valid(vin)
    d = decode(one_hot_probs(vin), "auto")
    assert d.vin == vin
    assert not d.checksum_valid and not d.checksum_required
    # ... while required must change something to satisfy the checksum.
    r = decode(one_hot_probs(vin), "required")
    assert r.vin != vin and rules.checksum_valid(r.vin)


def test_auto_requires_checksum_for_north_american_wmi() -> None:
    vin = "1HGCM82633A004352"
    bad = vin[:8] + "7" + vin[9:]
    d = decode(one_hot_probs(bad), "auto")
    assert rules.checksum_valid(d.vin)
    assert d.checksum_required


def test_margin_and_min_position_prob() -> None:
    vin = "1HGCM82633A004352"
    sure = decode(one_hot_probs(vin, 0.999))
    unsure = decode(one_hot_probs(vin, 0.6))
    assert sure.margin > unsure.margin > 0
    assert sure.min_position_prob == pytest.approx(0.999)
    assert unsure.min_position_prob == pytest.approx(0.6)
    assert len(sure.candidates) == 5
    assert all(rules.checksum_valid(c.vin) for c in sure.candidates)


def test_bad_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(17, 33\)"):
        decode(np.ones((16, 33)) / 33)


def test_decode_batch() -> None:
    vins = ["1HGCM82633A004352", "WVWZZZ1JZXW000001"]
    out = decode_batch(np.stack([one_hot_probs(v) for v in vins]))
    assert [d.vin for d in out] == vins
