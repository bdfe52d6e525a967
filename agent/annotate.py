"""Draw reads and misses onto a frame for ``read --annotate``."""

from __future__ import annotations

import cv2
import numpy as np

from agent.reader import FrameResult


def annotate(frame: np.ndarray, result: FrameResult) -> np.ndarray:
    """A copy of ``frame`` with quads, VINs and confidences drawn on it."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    scale = max(0.4, min(out.shape[:2]) / 900)
    thick = max(1, round(2 * scale))
    for miss in result.misses:
        b = miss.box
        cv2.rectangle(out, (b["xmin"], b["ymin"]), (b["xmax"], b["ymax"]), (0, 0, 255), thick)
        cv2.putText(
            out,
            miss.reason,
            (b["xmin"], max(12, b["ymin"] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            (0, 0, 255),
            thick,
        )
    for read in result.reads:
        pts = read.quad.astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, (0, 200, 0), thick)
        label = f"{read.vin} {read.confidence:.2f} {read.source}"
        org = (int(read.quad[:, 0].min()), max(14, int(read.quad[:, 1].min()) - 6))
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thick + 2)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 255, 0), thick)
    return out
