"""Calibrated confidence: the probability that a decoded VIN is exactly right.

The recognizer's per-position probabilities are over-confident in the way
all softmax classifiers are, and a product over 17 positions compounds it.
A small logistic model over decoding features, fitted on held-out generated
crops (``training/calibrate.py``), maps them to a probability; its
parameters ship in the model manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.vision.decoding import Decoded

#: Publish threshold on the calibrated confidence.  On 600 held-out hard
#: generated crops (recognizer 1.0.0): 0.5 publishes 67 % at 91 % precision,
#: 0.8 publishes 56 % at 97.6 %, 0.95 publishes 46 % at 99.6 %.  A wrong VIN
#: at a gate costs more than a miss, and fusion over frames lifts real reads.
DEFAULT_MIN_CONFIDENCE = 0.8
#: Reads that no check digit verifies (VINs outside North America and China
#: under the ``auto`` policy, or any VIN with the policy ``off``) must be this sure:
#: a misread, or a 17-character reading of some other label line, passes the
#: check digit only 1 time in 11, but nothing else catches it when there is none.
UNCHECKED_MIN_CONFIDENCE = 0.95


def required_confidence(min_confidence: float, checksum_valid: bool, source: str) -> float:
    """The publish threshold for one read: higher for OCR reads no check digit verifies
    (a barcode carries its own error detection)."""
    if checksum_valid or source != "ocr":
        return min_confidence
    return max(min_confidence, UNCHECKED_MIN_CONFIDENCE)


#: Feature order of the shipped calibrator; training and inference share it.
FEATURES = ("log_prob", "log_margin", "log_min_position_prob", "n_changed")
_MARGIN_CAP = 20.0


def features(decoded: Decoded) -> np.ndarray:
    """Decoding features for calibration, finite and bounded."""
    margin = decoded.margin if math.isfinite(decoded.margin) else _MARGIN_CAP
    return np.array(
        [
            max(decoded.log_prob, -50.0),
            min(margin, _MARGIN_CAP),
            math.log(max(decoded.min_position_prob, 1e-12)),
            float(len(decoded.changed_positions)),
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class Calibrator:
    """Logistic map from :data:`FEATURES` to P(VIN exactly right).

    ``kind="decoder"`` is the fallback without fitted parameters: the
    decoder's own probability of the best string, monotone but uncalibrated.
    """

    coef: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    intercept: float = 0.0
    kind: str = "logistic"

    @classmethod
    def from_manifest(cls, info: dict[str, Any] | None) -> Calibrator:
        """Read the ``calibration`` block of a manifest entry.

        Without one, fall back to the decoder's own probability of the best
        string, which is uncalibrated but monotone in the right direction.
        """
        if not info:
            return cls(kind="decoder")
        if tuple(info.get("features", ())) != FEATURES:
            raise ValueError(f"calibration features {info.get('features')} != {FEATURES}")
        return cls(coef=tuple(float(c) for c in info["coef"]), intercept=float(info["intercept"]))

    def confidence(self, decoded: Decoded) -> float:
        if self.kind == "decoder":
            return float(math.exp(min(decoded.log_prob, 0.0)))
        z = float(np.dot(self.coef, features(decoded))) + self.intercept
        return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))

    def as_manifest(self) -> dict[str, Any]:
        return {
            "type": "logistic",
            "features": list(FEATURES),
            "coef": list(self.coef),
            "intercept": self.intercept,
        }


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins: the gap between confidence and accuracy, weighted."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(ece)
