"""The CarsXE VIN OCR response for one frame (``success``, ``vin``, ``box``,
``confidence``, ``candidates``, ``message``), plus this project's fields.

Used by ``vin-agent read``, the local endpoint (``vin-agent serve``) and the
benchmarks, so a backend written for that API reads all of them unchanged.
"""

from __future__ import annotations

from typing import Any

from agent import vin
from agent.reader import FrameResult, Reader
from agent.vision.decoding import share_doubt


def response(
    result: FrameResult, reader: Reader | None = None, message: str | None = None
) -> dict[str, Any]:
    """The CarsXE VIN OCR response for one frame, plus this project's fields."""
    models = reader.models if reader else None
    if not result.reads:
        if message is None:
            if result.misses:
                reasons = sorted({m.reason for m in result.misses})
                message = "VIN-like text found but not read: " + ", ".join(reasons)
            else:
                message = "no VIN text line or VIN barcode found"
        return {
            "success": False,
            "vin": None,
            "box": None,
            "confidence": 0.0,
            "candidates": [],
            "message": message,
            "checksum_valid": None,
            "source": None,
            "quad": None,
            "decoded": None,
            "misses": [{"box": m.box, "reason": m.reason} for m in result.misses],
            "timing_ms": _round(result.timing_ms),
            "model": models,
        }
    best = result.reads[0]
    candidates = [
        {"vin": r.vin, "confidence": round(r.confidence, 4), "box": r.box} for r in result.reads
    ]
    if best.ocr is not None:
        read_vins = {r.vin for r in result.reads}
        alts = [c for c in best.ocr.decoded.candidates[1:4] if c.vin not in read_vins]
        candidates += [
            {"vin": v, "confidence": round(p, 4), "box": best.box}
            for v, p in share_doubt(alts, best.confidence)
        ]
    return {
        "success": True,
        "vin": best.vin,
        "box": best.box,
        "confidence": round(best.confidence, 4),
        "candidates": candidates,
        "message": "",
        "checksum_valid": best.checksum_valid,
        "source": best.source,
        "quad": [[round(float(x), 1), round(float(y), 1)] for x, y in best.quad],
        "decoded": vin.decode(best.vin),
        "misses": [{"box": m.box, "reason": m.reason} for m in result.misses],
        "timing_ms": _round(result.timing_ms),
        "model": models,
    }


def _round(timing: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timing.items()}
