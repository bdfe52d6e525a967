"""Checksum-constrained decoding of per-position probabilities into VINs.

The recognizer gives, for each of the 17 positions, a distribution over the
33 VIN characters.  Picking the argmax per position ignores what we know:
position 10 is never U, Z or 0, and where the policy demands it, position 9
is the check digit of the other 16.  This module finds the most probable
strings that obey those rules *exactly*, with a dynamic programme over
positions x (weighted sum mod 11), and returns the k best so the caller can
report candidates and a margin.

Under ``auto`` the search space splits on the first character: WMIs from a
checksum region (:data:`agent.vin.CHECKSUM_REGIONS`) must carry a valid check
digit, all others must not; the two k-best lists are merged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent import vin as rules

N_CLASSES = len(rules.ALPHABET)
_LOG_FLOOR = 1e-12
_CHECK = rules.CHECK_DIGIT_INDEX
_MODULUS = 11

#: Transliteration value of each class, in alphabet order.
_VALUES = np.array([rules.TRANSLITERATION[c] for c in rules.ALPHABET], dtype=np.int64)
#: Class index of the check character for each residue 0..10 ('X' for 10).
_CHECK_CLASS = np.array([rules.ALPHABET.index(c) for c in rules.CHECK_DIGIT_CHARS])


def _mask_from_rules() -> np.ndarray:
    mask = np.zeros((rules.VIN_LENGTH, N_CLASSES), dtype=bool)
    for i, rule in enumerate(rules.POSITION_RULES):
        for c in rule.allowed:
            mask[i, rules.ALPHABET.index(c)] = True
    return mask


#: Grammar of every position as a boolean (17, 33) mask.
GRAMMAR_MASK = _mask_from_rules()
#: For each position, target residue and class -> the residue before appending it.
_SOURCES = [
    (np.arange(_MODULUS)[:, None] - (_VALUES * w)[None, :]) % _MODULUS for w in rules.WEIGHTS
]
_REGION_CLASSES = np.array([c in rules.CHECKSUM_REGIONS for c in rules.ALPHABET])


@dataclass(frozen=True)
class Candidate:
    """One decoded string and its log-probability under the model."""

    vin: str
    log_prob: float

    @property
    def prob(self) -> float:
        return math.exp(self.log_prob)


@dataclass(frozen=True)
class Decoded:
    """The best legal VIN for some probabilities, with what decoding had to change.

    ``raw`` is the unconstrained per-position argmax; ``changed_positions``
    (1-based) are where the rules overrode it.  ``margin`` is the log-odds
    of the best against the runner-up (``inf`` when there is none), and
    ``min_position_prob`` the weakest single character of the best string.
    """

    vin: str
    log_prob: float
    candidates: tuple[Candidate, ...]
    raw: str
    changed_positions: tuple[int, ...]
    checksum_valid: bool
    checksum_required: bool
    margin: float
    min_position_prob: float


def _free_kbest(logp: np.ndarray, k: int) -> list[tuple[float, list[int]]]:
    """k best strings of independent positions (exact: top-k prefixes suffice)."""
    scores = np.array([0.0])
    paths: list[list[int]] = [[]]
    for pos in range(logp.shape[0]):
        total = scores[:, None] + logp[pos][None, :]
        flat = total.ravel()
        take = min(k, flat.size)
        top = np.argpartition(-flat, take - 1)[:take]
        top = top[np.argsort(-flat[top], kind="stable")]
        top = top[np.isfinite(flat[top])]
        if top.size == 0:
            return []
        prev, cls = np.divmod(top, N_CLASSES)
        paths = [[*paths[p], int(c)] for p, c in zip(prev, cls, strict=True)]
        scores = flat[top]
    return [(float(s), p) for s, p in zip(scores, paths, strict=True)]


def _checksum_kbest(logp: np.ndarray, k: int) -> list[tuple[float, list[int]]]:
    """k best strings whose position 9 is the check digit of the others.

    State: weighted sum mod 11 of the positions decided so far, with k
    entries per state.  Position 9 has weight 0, so it is skipped in the
    recursion and fixed at the end from the final residue.
    """
    scores = np.full((_MODULUS, k), -np.inf)
    scores[0, 0] = 0.0
    back: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    positions = [p for p in range(rules.VIN_LENGTH) if p != _CHECK]
    rows = np.arange(_MODULUS)[:, None]
    for pos in positions:
        # Appending class c moves residue r to r + step[c]; for a target r'
        # and class c the source residue is unique, so gather instead of sort.
        source = _SOURCES[pos]  # (11, 33)
        total = (scores[source] + logp[pos][None, :, None]).reshape(_MODULUS, -1)
        top = np.argsort(-total, axis=1)[:, :k]
        cls, j = np.divmod(top, k)
        back.append((source[rows, cls], j, cls))
        scores = total[rows, top]
    # Close with the check character each residue implies.
    final = scores + logp[_CHECK][_CHECK_CLASS][:, None]
    flat = final.ravel()
    order = np.argsort(-flat, kind="stable")[:k]
    out = []
    for idx in order:
        if not np.isfinite(flat[idx]):
            break
        res, entry = divmod(int(idx), k)
        chars = [0] * rules.VIN_LENGTH
        chars[_CHECK] = int(_CHECK_CLASS[res])
        for pos, (pr, pj, pc) in zip(reversed(positions), reversed(back), strict=True):
            chars[pos] = int(pc[res, entry])
            res, entry = int(pr[res, entry]), int(pj[res, entry])
        out.append((float(flat[idx]), chars))
    return out


def _log_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (rules.VIN_LENGTH, N_CLASSES):
        raise ValueError(f"expected probabilities of shape (17, 33), got {probs.shape}")
    return np.log(np.clip(probs, _LOG_FLOOR, 1.0))


def decode(
    probs: np.ndarray, policy: rules.ChecksumPolicy | str = rules.ChecksumPolicy.AUTO, k: int = 5
) -> Decoded:
    """The most probable VIN under the grammar and ``policy``, and the k best.

    ``probs`` is (17, 33) in :data:`agent.vin.ALPHABET` order.  Exact: no
    beam approximation; the result is the argmax over every legal string.
    """
    policy = rules.ChecksumPolicy(policy)
    k = max(1, int(k))
    logp = _log_probs(probs)
    legal = np.where(GRAMMAR_MASK, logp, -np.inf)
    if policy is rules.ChecksumPolicy.OFF:
        found = _free_kbest(legal, k)
    elif policy is rules.ChecksumPolicy.REQUIRED:
        found = _checksum_kbest(legal, k)
    else:
        in_region = legal.copy()
        in_region[0, ~_REGION_CLASSES] = -np.inf
        elsewhere = legal.copy()
        elsewhere[0, _REGION_CLASSES] = -np.inf
        found = _checksum_kbest(in_region, k) + _free_kbest(elsewhere, k)
        found.sort(key=lambda item: -item[0])
        found = found[:k]
    raw = "".join(rules.ALPHABET[i] for i in logp.argmax(axis=1))
    candidates = tuple(
        Candidate("".join(rules.ALPHABET[i] for i in chars), score) for score, chars in found
    )
    best = candidates[0]
    best_idx = [rules.ALPHABET.index(c) for c in best.vin]
    position_probs = np.exp(logp[np.arange(rules.VIN_LENGTH), best_idx])
    margin = best.log_prob - candidates[1].log_prob if len(candidates) > 1 else math.inf
    return Decoded(
        vin=best.vin,
        log_prob=best.log_prob,
        candidates=candidates,
        raw=raw,
        changed_positions=tuple(
            i + 1 for i, (a, b) in enumerate(zip(raw, best.vin, strict=True)) if a != b
        ),
        checksum_valid=rules.checksum_valid(best.vin),
        checksum_required=rules.checksum_required(best.vin, policy),
        margin=float(margin),
        min_position_prob=float(position_probs.min()),
    )


def share_doubt(runners_up: list[Candidate], confidence: float) -> list[tuple[str, float]]:
    """Split the probability that the best read is wrong (1 - confidence) among
    runner-up strings, in proportion to their decoder probabilities."""
    weights = np.exp([c.log_prob for c in runners_up]) if runners_up else np.zeros(0)
    total = float(weights.sum())
    return [
        (c.vin, (1.0 - confidence) * float(w) / total if total > 0 else 0.0)
        for c, w in zip(runners_up, weights, strict=True)
    ]


def decode_batch(
    probs: np.ndarray, policy: rules.ChecksumPolicy | str = rules.ChecksumPolicy.AUTO, k: int = 5
) -> list[Decoded]:
    """:func:`decode` over a batch (N, 17, 33)."""
    return [decode(p, policy, k) for p in np.asarray(probs)]
