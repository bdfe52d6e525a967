"""Frame geometry: letterboxing for the detector, quads, boxes and rectified crops."""

from __future__ import annotations

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
    """
    quad = np.asarray(quad, np.float32)
    w = float(max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])))
    h = float(max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])))
    out_h = int(np.clip(round(h), 8, max_height))
    out_w = int(np.clip(round(w * out_h / max(h, 1.0)), 16, out_h * 40))
    dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1], [0, out_h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(quad, dst)
    return cv2.warpPerspective(
        image, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def expand_quad(quad: np.ndarray, along: float, across: float) -> np.ndarray:
    """Grow an ordered quad by fractions of its length (along) and height (across)."""
    q = np.asarray(quad, np.float32)
    ux = (q[1] - q[0] + q[2] - q[3]) / 2
    uy = (q[3] - q[0] + q[2] - q[1]) / 2
    dx, dy = ux * along / 2, uy * across / 2
    return np.array([q[0] - dx - dy, q[1] + dx - dy, q[2] + dx + dy, q[3] - dx + dy], np.float32)
