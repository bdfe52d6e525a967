"""The recognizer's held-out measurements, through the agent's own decoding path.

``evaluate_logits`` scores the constrained decode and the calibration;
``reader_verdicts`` applies everything the reader applies to one line (the
length, checksum and manufacturer rules and the publish threshold), so the
training report says what a deployed agent would publish, not only what the
network read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.vin import ALPHABET
from agent.vision.calibration import DEFAULT_MIN_CONFIDENCE, expected_calibration_error
from agent.vision.ctc import AlignmentError, slot_probabilities
from agent.vision.decoding import Decoded, decode
from agent.vision.recognizer import softmax


def labels_to_text(y: np.ndarray) -> list[str]:
    return ["".join(ALPHABET[i] for i in row) for row in y]


def evaluate_logits(
    logits: np.ndarray, truth: list[str], calibrator: Any | None = None
) -> dict[str, Any]:
    """Exact/char accuracy after constrained decoding, and calibration metrics.

    Goes through the agent's own path: softmax, CTC columns to 17 slots,
    constrained decode.
    """
    probs = []
    for frame_logits in logits:
        try:
            probs.append(slot_probabilities(softmax(frame_logits)))
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


def rule_passing(logits: np.ndarray) -> list[Decoded]:
    """Decoded reads of the crops whose read the reader's rules (length, checksum,
    manufacturer) would let through to the threshold: the negatives calibration needs."""
    from agent.reader import rejection
    from agent.vision.ctc import align
    from agent.vision.recognizer import Read

    out = []
    for frame_logits in logits:
        try:
            probs, forced = align(softmax(frame_logits))
        except AlignmentError:
            continue
        decoded = decode(probs, "auto", k=5)
        if rejection(Read(decoded.vin, 0.0, decoded, probs), forced) is None:
            out.append(decoded)
    return out


def reader_verdicts(logits: np.ndarray, calibrator: Any) -> list[tuple[str, str | None]]:
    """(VIN, None) for each crop the reader would publish, (VIN or "", miss reason) else:
    the agent's own length, checksum and manufacturer rules and its threshold."""
    from agent.reader import rejection
    from agent.vision.calibration import required_confidence
    from agent.vision.ctc import align
    from agent.vision.recognizer import Read

    out: list[tuple[str, str | None]] = []
    for frame_logits in logits:
        try:
            probs, forced = align(softmax(frame_logits))
        except AlignmentError:
            out.append(("", "not_17_characters"))
            continue
        decoded = decode(probs, "auto", k=5)
        read = Read(decoded.vin, calibrator.confidence(decoded), decoded, probs)
        reason = rejection(read, forced)
        if reason is None and read.confidence < required_confidence(
            DEFAULT_MIN_CONFIDENCE, decoded.checksum_valid, "ocr"
        ):
            reason = "below_threshold"
        out.append((read.vin, reason))
    return out
