"""Fit the confidence calibrator on held-out generated crops."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from agent.vision.calibration import Calibrator, expected_calibration_error, features
from agent.vision.decoding import Decoded

logger = logging.getLogger(__name__)

#: Lines that hold no VIN rendered for calibration (of which a few per cent
#: pass the VIN rules and are fitted as wrong reads).
NEG_CALIB_DEFAULT = 4_000


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (a handful of features)."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    w = np.zeros(xs.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ w, -50, 50)))
        grad = xs.T @ (p - y) + l2 * np.r_[w[:-1], 0.0]
        hess = (xs * (p * (1 - p))[:, None]).T @ xs + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    coef = w[:-1] / sd
    intercept = float(w[-1] - np.dot(coef, mu))
    return coef, intercept


def fit_calibrator(
    decoded: list[Decoded], labels: list[str], negatives: Sequence[Decoded] = ()
) -> tuple[Calibrator, dict[str, float]]:
    """Fit on (decoded, true VIN) pairs, plus reads of lines that hold no VIN at all.

    ``negatives`` are such reads that the reader's rules let through (a label
    line or a VIN-shaped distractor forced into a VIN that passes the check
    digit): fitted on VIN crops alone, the calibrator learns that a large
    margin after the check digit changed an unsure position means a corrected
    error, which on a distractor it does not. Fit metrics are on the VIN crops.
    """
    both = [*decoded, *negatives]
    x = np.stack([features(d) for d in both])
    right = [d.vin == t for d, t in zip(decoded, labels, strict=True)]
    y = np.array(right + [False] * len(negatives), dtype=np.float64)
    if y.min() == y.max():
        # All right (or all wrong): nothing to separate; keep the decoder's own probability.
        logger.warning("calibration set is all %s; using the uncalibrated fallback", bool(y[0]))
        cal = Calibrator(kind="decoder")
    else:
        coef, intercept = fit_logistic(x, y)
        cal = Calibrator(coef=tuple(float(c) for c in coef), intercept=intercept)
    conf = np.array([cal.confidence(d) for d in decoded])
    neg_conf = np.array([cal.confidence(d) for d in negatives])
    return cal, {
        "n": float(len(decoded)),
        "accuracy": float(np.mean(right)),
        "ece_fit": expected_calibration_error(conf, np.array(right, dtype=np.float64)),
        "n_negatives": float(len(negatives)),
        "negatives_mean_confidence": float(neg_conf.mean()) if len(negatives) else 0.0,
    }
