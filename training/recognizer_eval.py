"""The recognizer's held-out measurements, through the agent's own decoding path.

``evaluate_logits`` scores the constrained decode and the calibration;
``reader_verdicts`` applies everything the reader applies to one line (the
length, checksum and manufacturer rules and the publish threshold), so the
training report says what a deployed agent would publish, not only what the
network read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from agent.vin import ALPHABET
from agent.vision.calibration import DEFAULT_MIN_CONFIDENCE, expected_calibration_error
from agent.vision.ctc import AlignmentError, slot_probabilities
from agent.vision.decoding import Decoded, decode
from agent.vision.recognizer import vin_columns


def labels_to_text(y: np.ndarray) -> list[str]:
    return ["".join(ALPHABET[i] for i in row) for row in y]


def evaluate_logits(
    logits: np.ndarray, truth: list[str], calibrator: Any | None = None
) -> dict[str, Any]:
    """Exact/char accuracy after constrained decoding, and calibration metrics.

    Goes through the agent's own path: softmax (``vin_columns``), CTC columns to 17 slots,
    constrained decode.
    """
    probs = []
    for frame_logits in logits:
        try:
            probs.append(slot_probabilities(vin_columns(frame_logits)))
        except AlignmentError:
            probs.append(np.full((17, len(ALPHABET)), 1.0 / len(ALPHABET)))
    decoded = [decode(p, "auto", k=5) for p in probs]
    exact = np.array([d.vin == t for d, t in zip(decoded, truth, strict=True)])
    raw_exact = np.array([d.raw == t for d, t in zip(decoded, truth, strict=True)])
    chars = np.mean(
        [
            sum(a == b for a, b in zip(d.vin, t, strict=True)) / 17
            for d, t in zip(decoded, truth, strict=True)
        ]
    )
    out: dict[str, Any] = {
        "n": len(truth),
        "exact": float(exact.mean()),
        "exact_unconstrained": float(raw_exact.mean()),
        "char_accuracy": float(chars),
        "decoded": decoded,
    }
    if calibrator is not None:
        conf = np.array([calibrator.confidence(d) for d in decoded])
        published = conf >= DEFAULT_MIN_CONFIDENCE
        out["ece"] = expected_calibration_error(conf, exact)
        out["published"] = float(published.mean())
        out["wrong_published"] = float((published & ~exact).mean())
        out["min_confidence"] = DEFAULT_MIN_CONFIDENCE
    return out


def _rule_verdicts(logits: np.ndarray) -> Iterator[tuple[Decoded | None, str | None]]:
    """(decoded read, why the reader's rules refuse it or None) for each crop; no read
    when the columns cannot hold 17 characters."""
    from agent.reader import rejection
    from agent.vision.ctc import align
    from agent.vision.recognizer import Read

    for frame_logits in logits:
        try:
            probs, forced = align(vin_columns(frame_logits))
        except AlignmentError:
            yield None, "not_17_characters"
            continue
        decoded = decode(probs, "auto", k=5)
        yield decoded, rejection(Read(decoded.vin, 0.0, decoded, probs), forced)


def rule_passing(logits: np.ndarray) -> list[Decoded]:
    """Decoded reads of the crops whose read the reader's rules (length, checksum,
    manufacturer) would let through to the threshold: the negatives calibration needs."""
    return [d for d, reason in _rule_verdicts(logits) if d is not None and reason is None]


def reader_verdicts(logits: np.ndarray, calibrator: Any) -> list[tuple[str, str | None]]:
    """(VIN, None) for each crop the reader would publish, (VIN or "", miss reason) else:
    the agent's own length, checksum and manufacturer rules and its threshold."""
    from agent.vision.calibration import required_confidence

    out: list[tuple[str, str | None]] = []
    for decoded, reason in _rule_verdicts(logits):
        if decoded is None:
            out.append(("", reason))
            continue
        if reason is None and calibrator.confidence(decoded) < required_confidence(
            DEFAULT_MIN_CONFIDENCE, decoded.checksum_valid, "ocr"
        ):
            reason = "below_threshold"
        out.append((decoded.vin, reason))
    return out


def calibrated_metrics(
    test_logits: np.ndarray, truth: list[str], neg_logits: np.ndarray, calibrator: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest's metrics that depend on the calibrator, on held-out VIN crops and
    lines without a VIN; also ``evaluate_logits``' result on the VIN crops."""
    int8 = evaluate_logits(test_logits, truth, calibrator)
    verdicts = reader_verdicts(test_logits, calibrator)
    published = [v == t for (v, r), t in zip(verdicts, truth, strict=True) if r is None]
    neg = reader_verdicts(neg_logits, calibrator)
    reasons: dict[str, int] = {}
    for _, reason in neg:
        reasons[str(reason)] = reasons.get(str(reason), 0) + 1
    metrics = {
        "ece": int8["ece"],
        "published_at_min_confidence": int8["published"],
        "wrong_published_at_min_confidence": int8["wrong_published"],
        # Through the reader's rules as well as its threshold (reader.rejection).
        "published_by_reader": len(published) / max(len(truth), 1),
        "wrong_published_by_reader": published.count(False) / max(len(truth), 1),
        "n_negatives_test": len(neg),
        "negatives_published": reasons.get("None", 0) / max(len(neg), 1),
        "negatives_by_reason": reasons,
    }
    return metrics, int8
