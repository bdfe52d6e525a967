"""The detector: where in a frame are VIN text lines?

A small int8 segmentation network scores, at 1/4 of the detector input
resolution, the shrunk core of each VIN line.  Connected components of that
map become oriented quads (``cv2.minAreaRect``), grown back to the full line
and mapped to original-frame pixels.  Shrinking the target keeps adjacent
label lines apart, as in DBNet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from agent.vision.geometry import Letterbox, expand_quad, letterbox, order_quad, quad_box
from agent.vision.manifest import Manifest
from agent.vision.runtime import RuntimeConfig, TFLiteModel

logger = logging.getLogger(__name__)

MODEL_NAME = "detector"
INPUT_WIDTH = 640
INPUT_HEIGHT = 384
STRIDE = 4
#: The training target is the line quad shrunk to these fractions of its
#: length and height; inference grows components back by the inverse.
SHRINK_ALONG = 0.92
SHRINK_ACROSS = 0.5


@dataclass(frozen=True)
class Detection:
    """One VIN line candidate in original-frame pixels."""

    quad: np.ndarray  # (4, 2) float32, ordered TL, TR, BR, BL along the line
    box: dict[str, int]
    score: float

    @property
    def height_px(self) -> float:
        q = self.quad
        return float((np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def quads_from_map(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_area: int = 4,
    min_aspect: float = 2.5,
) -> list[tuple[np.ndarray, float]]:
    """Components of a probability map -> (quad in map pixels, mean score), unshrunk."""
    mask = (prob >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        ys, xs = np.nonzero(labels == i)
        pts = np.stack([xs, ys], axis=1).astype(np.float32)
        (cx, cy), (w, h), angle = cv2.minAreaRect(pts)
        # Pixel centres span one pixel less than the region they cover.
        w, h = w + 1.0, h + 1.0
        if max(w, h) / max(min(w, h), 1e-3) < min_aspect:
            continue
        quad = order_quad(cv2.boxPoints(((cx, cy), (w, h), angle)))
        quad = expand_quad(quad, 1 / SHRINK_ALONG - 1, 1 / SHRINK_ACROSS - 1)
        found.append((quad, float(prob[labels == i].mean())))
    return found


class Detector:
    """Loads the verified detector once; finds VIN lines in frames of any size."""

    def __init__(self, manifest: Manifest, runtime: RuntimeConfig | None = None) -> None:
        entry = manifest.entry(MODEL_NAME)
        self.model = TFLiteModel(entry, runtime)
        _, self.height, self.width, _ = self.model.input_shape
        self.threshold = float(entry.info.get("threshold", 0.5))
        self.version = entry.version
        self.sha256 = entry.sha256

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        return letterbox(gray, self.width, self.height)

    def probability_map(self, prepared: np.ndarray) -> np.ndarray:
        (logits,) = self.model.invoke(prepared[None, :, :, None].astype(self.model.input_dtype))
        return sigmoid(logits[0, :, :, 0])

    def detect(self, frame: np.ndarray) -> list[Detection]:
        prepared, lb = self.prepare(frame)
        prob = self.probability_map(prepared)
        stride = self.height / prob.shape[0]
        h, w = frame.shape[:2]
        out = []
        for quad, score in quads_from_map(prob, self.threshold):
            # Map pixel centres of the 1/4 map back to input pixels, then to the frame.
            q = lb.to_frame((quad + 0.5) * stride - 0.5)
            out.append(Detection(quad=q.astype(np.float32), box=quad_box(q, w, h), score=score))
        out.sort(key=lambda d: -d.score)
        return out
