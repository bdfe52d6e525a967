"""Fit the confidence calibrator on held-out generated crops."""

from __future__ import annotations

import logging

import numpy as np

from agent.vision.calibration import Calibrator, expected_calibration_error, features
from agent.vision.decoding import Decoded

logger = logging.getLogger(__name__)


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
    decoded: list[Decoded], labels: list[str]
) -> tuple[Calibrator, dict[str, float]]:
    """Fit on (decoded, true VIN) pairs; return the calibrator and its fit metrics."""
    x = np.stack([features(d) for d in decoded])
    y = np.array([d.vin == t for d, t in zip(decoded, labels, strict=True)], dtype=np.float64)
    if y.min() == y.max():
        # All right (or all wrong): nothing to separate; keep the decoder's own probability.
        logger.warning("calibration set is all %s; using the uncalibrated fallback", bool(y[0]))
        cal = Calibrator(kind="decoder")
    else:
        coef, intercept = fit_logistic(x, y)
        cal = Calibrator(coef=tuple(float(c) for c in coef), intercept=intercept)
    conf = np.array([cal.confidence(d) for d in decoded])
    return cal, {
        "n": float(len(y)),
        "accuracy": float(y.mean()),
        "ece_fit": expected_calibration_error(conf, y),
    }
