"""The CarsXE response built from a frame's reads."""

from __future__ import annotations

import numpy as np

from agent import vin
from agent.reader import FrameResult, LineRead, Miss
from agent.response import response

CARSXE_FIELDS = {"success", "vin", "box", "confidence", "candidates", "message"}
VIN = "1HGCM82633A004352"


def _ocr(text: str, conf: float) -> LineRead:
    box = {"xmin": 10, "xmax": 200, "ymin": 10, "ymax": 30}
    quad = np.array([[10, 10], [200, 10], [200, 30], [10, 30]], np.float32)
    return LineRead(text, conf, vin.checksum_valid(text), quad, box, "ocr")


def test_failure_response_has_the_same_keys_as_success() -> None:
    """Backends parse one schema; a miss must not drop fields a hit has."""
    miss = FrameResult(misses=[Miss({"xmin": 1, "xmax": 2, "ymin": 3, "ymax": 4}, "too_small")])
    fail = response(miss)
    ok = FrameResult(reads=[_ocr(VIN, 0.9)], width=640, height=480)
    hit = response(ok)
    assert CARSXE_FIELDS <= set(fail) and set(fail) == set(hit)
    assert fail["success"] is False and "too_small" in fail["message"]
    assert hit["success"] is True and hit["vin"] == VIN and hit["source"] == "ocr"
    assert hit["candidates"][0] == {"vin": VIN, "confidence": 0.9, "box": hit["box"]}
