"""Frame geometry: letterboxing for the detector, quads, boxes and rectified crops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How a frame was scaled and padded into the detector input."""

    scale: float
    pad_x: int
    pad_y: int

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        """Detector-input pixel coordinates -> original frame pixels."""
        return (pts - np.array([self.pad_x, self.pad_y], np.float32)) / self.scale


def letterbox(gray: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Letterbox]:
    """Scale ``gray`` to fit ``width x height`` keeping aspect, pad the rest with mid-gray."""
    h, w = gray.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (nw, nh), interpolation=interp)
    out = np.full((height, width), 127, np.uint8)
    px, py = (width - nw) // 2, (height - nh) // 2
    out[py : py + nh, px : px + nw] = resized
    return out, Letterbox(scale, px, py)


def order_quad(pts: np.ndarray) -> np.ndarray:
    """Order 4 points as a text line: top-left, top-right, bottom-right, bottom-left.

    "Top-left" is taken along the quad's long axis, so for a rotated line the
    first edge is the long one; reading direction (0 vs 180 degrees) stays
    ambiguous and is settled by the recognizer trying both.
    """
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    centre = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    pts = pts[np.argsort(angles)]  # clockwise in image coordinates, starting anywhere
    # Make the first edge a long edge.
    if np.linalg.norm(pts[1] - pts[0]) < np.linalg.norm(pts[2] - pts[1]):
        pts = np.roll(pts, -1, axis=0)
    # Prefer the orientation whose first edge points rightwards (upright text).
    if pts[1, 0] - pts[0, 0] < 0:
        pts = np.roll(pts, -2, axis=0)
    return pts


def quad_box(quad: np.ndarray, width: int, height: int) -> dict[str, int]:
    """Axis-aligned CarsXE box {xmin, xmax, ymin, ymax} clipped to the frame."""
    xs, ys = quad[:, 0], quad[:, 1]
    return {
        "xmin": int(np.clip(np.floor(xs.min()), 0, width - 1)),
        "xmax": int(np.clip(np.ceil(xs.max()), 0, width - 1)),
        "ymin": int(np.clip(np.floor(ys.min()), 0, height - 1)),
        "ymax": int(np.clip(np.ceil(ys.max()), 0, height - 1)),
    }


def rectify(image: np.ndarray, quad: np.ndarray, max_height: int = 96) -> np.ndarray:
    """Perspective-rectified crop of an ordered quad, from the full-resolution frame.

    Output height follows the line's own height (capped) so small VINs keep
    every pixel they have and large ones are not wastefully big.

    Bit-exact on every architecture, unlike ``cv2.warpPerspective``, whose
    crops differed between x86-64 and arm64 in the last bits and moved a few
    reads across thresholds (scripts/arm64-check): the sampling map is built
    in float64 with plain arithmetic (IEEE rounding, no fused multiply-add),
    converted to OpenCV's fixed-point map, and sampled by ``cv2.remap``'s
    integer bilinear path.
    """
    q = [(float(x), float(y)) for x, y in np.asarray(quad, np.float64)]
    w = max(_dist(q[0], q[1]), _dist(q[3], q[2]))
    h = max(_dist(q[0], q[3]), _dist(q[1], q[2]))
    out_h = int(np.clip(round(h), 8, max_height))
    out_w = int(np.clip(round(w * out_h / max(h, 1.0)), 16, out_h * 40))
    a, b, c, d, e, f, g, hh = _square_to_quad(q)
    u = (np.arange(out_w, dtype=np.float64) / (out_w - 1))[None, :]
    v = (np.arange(out_h, dtype=np.float64) / (out_h - 1))[:, None]
    den = g * u + hh * v + 1.0
    map_x = ((a * u + b * v + c) / den).astype(np.float32)
    map_y = ((d * u + e * v + f) / den).astype(np.float32)
    fixed, frac = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    return cv2.remap(image, fixed, frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _dist(p: tuple[float, float], r: tuple[float, float]) -> float:
    return math.sqrt((p[0] - r[0]) * (p[0] - r[0]) + (p[1] - r[1]) * (p[1] - r[1]))


def _square_to_quad(q: list[tuple[float, float]]) -> tuple[float, ...]:
    """Projective map of the unit square onto quad TL, TR, BR, BL (Heckbert, 1989):
    x = (a u + b v + c) / (g u + h v + 1), y = (d u + e v + f) / (g u + h v + 1)."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = q
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    den = dx1 * dy2 - dx2 * dy1
    if den == 0.0:  # degenerate quad: fall back to the affine map
        g = h = 0.0
    else:
        g = (sx * dy2 - dx2 * sy) / den
        h = (dx1 * sy - sx * dy1) / den
    return (x1 - x0 + g * x1, x3 - x0 + h * x3, x0, y1 - y0 + g * y1, y3 - y0 + h * y3, y0, g, h)


def quad_height(quad: np.ndarray) -> float:
    """Height of an ordered quad (TL, TR, BR, BL): the mean of its two side edges, the
    line height the detector, the reader's size rules and the training sets all use."""
    q = np.asarray(quad, np.float32)
    return float((np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2)


def quad_axes(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Centre, unit vector along the line, length and height of an ordered quad."""
    q = np.asarray(quad, np.float32)
    along = (q[1] - q[0] + q[2] - q[3]) / 2
    length = float(np.linalg.norm(along))
    height = float(np.linalg.norm((q[3] - q[0] + q[2] - q[1]) / 2))
    return q.mean(axis=0), along / max(length, 1e-6), length, height


def expand_quad(quad: np.ndarray, along: float, across: float) -> np.ndarray:
    """Grow an ordered quad by fractions of its length (along) and height (across)."""
    q = np.asarray(quad, np.float32)
    ux = (q[1] - q[0] + q[2] - q[3]) / 2
    uy = (q[3] - q[0] + q[2] - q[1]) / 2
    dx, dy = ux * along / 2, uy * across / 2
    return np.array([q[0] - dx - dy, q[1] + dx - dy, q[2] + dx + dy, q[3] - dx + dy], np.float32)


def stretch_quad(quad: np.ndarray, factor: float, before: float = 0.5) -> np.ndarray:
    """Lengthen an ordered quad ``factor`` times, ``before`` of the growth ahead of its
    start (0: only past its end, 0.5: both ends alike, 1: only ahead of its start)."""
    q = np.asarray(quad, np.float32)
    grow = (q[1] - q[0] + q[2] - q[3]) / 2 * (factor - 1)
    ahead, past = grow * before, grow * (1 - before)
    return np.array([q[0] - ahead, q[1] + past, q[2] + past, q[3] - ahead], np.float32)
