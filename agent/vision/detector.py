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

from agent.vision.geometry import (
    Letterbox,
    expand_quad,
    letterbox,
    order_quad,
    quad_axes,
    quad_box,
    quad_height,
)
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
#: Frames at least this many times larger than the detector input are also
#: searched in 2x2 overlapping tiles, each shrunk 1.7x less than the whole
#: frame (a 640x480 tile is even enlarged): the network misses most lines
#: whose characters shrink below a few input pixels.  Once only from 2.5
#: (1920x1080) for cost; from 1.0, on 1,000 generated scenes (seed 2718,
#: detector 1.6.0, quarter turn), exact 40.7 -> 45.7 %, wrong 1.13 -> 1.22 %,
#: false reads 6 -> 6 of 150: 640x480-class frames 49.7 -> 54.9 %, 1280x720
#: 37.7 -> 47.4 %.  Dropped: a 3x3 grid from 2.5 (2.3 points more there for
#: 0.9 more wrong); skipping tiles where the whole-frame map stays below 0.1
#: (37 % of tiles; exact 45.7 -> 43.9 %).  The quarter-turned frame is tiled
#: too: 2,000 scenes (seed 31337) 47.7 / 1.42 / 11 -> 49.2 / 1.64 / 12, 1,000
#: 45.7 / 1.22 / 6 -> 47.2 / 1.41 / 6.
TILE_FROM_SCALE = 1.0
#: Tiles overlap by this fraction of the frame, so a line cut by one tile's
#: edge lies whole in its neighbour or is left to the whole-frame pass.
TILE_OVERLAP = 0.2
#: A line found by a second pass (tiles, the quarter turn) is the same line as
#: one already found when their boxes' IoU reaches this.  IoU, not containment:
#: a fragment of a line found by one pass must not hide the whole line from another.
DUPLICATE_IOU = 0.3
#: A line found above the model's threshold extends over the cells around it
#: above this (hysteresis): the map is often weaker along the rest of a line
#: than at its core. On 2,000 generated scenes (seed 31337, recognizer 1.2.1,
#: default publish threshold), with the model's threshold 0.8 alone: 39.0 %
#: exact, 2.00 % wrong, 11 false reads on 263 VIN-less scenes; extended to
#: 0.65: 39.7 / 1.60 / 10; to 0.5: 39.7 / 1.73 / 7; to 0.3: 39.6 / 1.78 / 7. On
#: 1,000 other scenes (seed 2718): 39.0 / 1.69 / 8 -> 39.1 / 1.60 / 9 at 0.5.
EXTENT_THRESHOLD = 0.5


#: Fragments of one line are joined when they are this parallel (degrees),
#: this similar in height (ratio), this close across the line (line heights,
#: centre to line) and separated by at most this gap along it (line heights).
JOIN_MAX_ANGLE = 8.0
JOIN_MAX_HEIGHT_RATIO = 1.5
JOIN_MAX_OFFSET = 0.35
JOIN_MAX_GAP = 1.5


@dataclass(frozen=True)
class Detection:
    """One VIN line candidate in original-frame pixels.

    ``parts`` is set on a line joined from collinear fragments (the map often
    breaks a long line where its characters are sparse): the reader tries
    the joined line first and falls back to the fragments.
    """

    quad: np.ndarray  # (4, 2) float32, ordered TL, TR, BR, BL along the line
    box: dict[str, int]
    score: float
    parts: tuple[Detection, ...] = ()
    #: The pass that found it: "frame", "turned" (the quarter-turned frame), "tile" or
    #: "turned_tile"; a joined line is "frame" when any of its parts is.
    origin: str = "frame"

    @property
    def height_px(self) -> float:
        return quad_height(self.quad)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def quads_from_map(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_area: int = 4,
    min_aspect: float = 2.5,
    low: float | None = None,
) -> list[tuple[np.ndarray, float]]:
    """Components of a probability map -> (quad in map pixels, mean score), unshrunk.

    With ``low`` (hysteresis, as in Canny's edges), a component is the region
    above ``low`` around cells that reach ``threshold``: the high threshold
    decides whether there is a line, the low one how far it goes.
    """
    low = threshold if low is None else min(low, threshold)
    mask = (prob >= low).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        ys, xs = np.nonzero(labels == i)
        scores = prob[ys, xs]
        if scores.max() < threshold:  # hysteresis: no cell of it reaches the high threshold
            continue
        pts = np.stack([xs, ys], axis=1).astype(np.float32)
        (cx, cy), (w, h), angle = cv2.minAreaRect(pts)
        # Pixel centres span one pixel less than the region they cover.
        w, h = w + 1.0, h + 1.0
        if max(w, h) / max(min(w, h), 1e-3) < min_aspect:
            continue
        quad = order_quad(cv2.boxPoints(((cx, cy), (w, h), angle)))
        quad = expand_quad(quad, 1 / SHRINK_ALONG - 1, 1 / SHRINK_ACROSS - 1)
        found.append((quad, float(scores.mean())))
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

    def detect(
        self, frame: np.ndarray, tiles: bool = True, turned: bool = False
    ) -> list[Detection]:
        """VIN line candidates, best first.

        Frames are also searched tile by tile (``tiles``, ``TILE_FROM_SCALE``),
        and also turned a quarter (``turned``, off by default; tiled as well):
        the network finds vertical lines (portrait photos of a door label) far
        less often than horizontal ones.
        """
        h, w = frame.shape[:2]
        found = self._detect_in(frame, 0, 0, (w, h))
        quarter = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE) if turned else None
        if quarter is not None:
            _add_new(found, turned_back(self._detect_in(quarter, 0, 0, (h, w)), w, h, "turned"))
        if tiles:
            _add_new(found, self._tiles(frame))
            if quarter is not None:
                _add_new(found, turned_back(self._tiles(quarter), w, h, "turned_tile"))
        found = join_fragments(found, w, h)
        found.sort(key=lambda d: -d.score)
        return found

    def _tiles(self, image: np.ndarray) -> list[Detection]:
        """Lines found in 2x2 overlapping tiles of ``image``, best first; none for an
        image smaller than ``TILE_FROM_SCALE`` times the input."""
        h, w = image.shape[:2]
        if max(w / self.width, h / self.height) < TILE_FROM_SCALE:
            return []
        tw, th = round(w * (1 + TILE_OVERLAP) / 2), round(h * (1 + TILE_OVERLAP) / 2)
        extra: list[Detection] = []
        for y0 in (0, h - th):
            for x0 in (0, w - tw):
                tile = image[y0 : y0 + th, x0 : x0 + tw]
                extra.extend(
                    d
                    for d in self._detect_in(tile, x0, y0, (w, h), "tile")
                    if not _cut_by_tile(d.box, x0, y0, tw, th, w, h)
                )
        return sorted(extra, key=lambda d: -d.score)

    def _detect_in(
        self,
        image: np.ndarray,
        x0: int,
        y0: int,
        frame_size: tuple[int, int],
        origin: str = "frame",
    ) -> list[Detection]:
        prepared, lb = self.prepare(image)
        prob = self.probability_map(prepared)
        stride = self.height / prob.shape[0]
        out = []
        for quad, score in quads_from_map(prob, self.threshold, low=EXTENT_THRESHOLD):
            # Map pixel centres of the 1/4 map back to input pixels, then to the frame.
            q = lb.to_frame((quad + 0.5) * stride - 0.5) + np.array([x0, y0], np.float32)
            box = quad_box(q, *frame_size)
            out.append(Detection(q.astype(np.float32), box, score, origin=origin))
        return out


def _joinable(a: np.ndarray, b: np.ndarray) -> bool:
    ca, ua, la, ha = quad_axes(a)
    cb, ub, lb, hb = quad_axes(b)
    if min(ha, hb) <= 0 or max(ha, hb) / min(ha, hb) > JOIN_MAX_HEIGHT_RATIO:
        return False
    if abs(float(ua @ ub)) < np.cos(np.radians(JOIN_MAX_ANGLE)):
        return False
    h = (ha + hb) / 2
    d = cb - ca
    offset = abs(float(d[0] * ua[1] - d[1] * ua[0]))  # across the line
    gap = abs(float(d @ ua)) - (la + lb) / 2  # between the facing ends
    return offset <= JOIN_MAX_OFFSET * h and gap <= JOIN_MAX_GAP * h


def _joined_quad(quads: list[np.ndarray]) -> np.ndarray:
    """The quad spanning collinear quads: along the first's axis, as tall as the tallest."""
    _, u, _, _ = quad_axes(quads[0])
    n = np.array([-u[1], u[0]], np.float32)
    pts = np.concatenate(quads)
    s, t = pts @ u, pts @ n
    mid = (t.min() + t.max()) / 2
    half = max(quad_axes(q)[3] for q in quads) / 2
    corners = [(s.min(), mid - half), (s.max(), mid - half), (s.max(), mid + half)]
    corners.append((s.min(), mid + half))
    return order_quad(np.array([a * u + b * n for a, b in corners], np.float32))


def join_fragments(dets: list[Detection], w: int, h: int) -> list[Detection]:
    """The detections, each chain of collinear fragments replaced by the line they make
    (which carries them as ``parts``)."""
    groups: list[list[int]] = []
    for i in range(len(dets)):
        linked = [g for g in groups if any(_joinable(dets[i].quad, dets[j].quad) for j in g)]
        for g in linked:
            groups.remove(g)
        groups.append([i] + [j for g in linked for j in g])
    joined = []
    for g in groups:
        if len(g) < 2:
            continue
        parts = tuple(sorted((dets[j] for j in g), key=lambda d: -d.score))
        quad = _joined_quad([p.quad for p in parts])
        score = max(p.score for p in parts)
        origins = {p.origin for p in parts}
        origin = "frame" if "frame" in origins else parts[0].origin
        joined.append(Detection(quad, quad_box(quad, w, h), score, parts, origin))
    inside = {id(p) for d in joined for p in d.parts}
    return joined + [d for d in dets if id(d) not in inside]


def _add_new(found: list[Detection], more: list[Detection]) -> None:
    """Append the lines of a second pass that no line already found duplicates, each once."""
    for det in more:
        if not any(_duplicate(det.box, k.box) for k in found):
            found.append(det)


def turned_back(found: list[Detection], w: int, h: int, origin: str) -> list[Detection]:
    """Lines found in a w x h frame turned a quarter clockwise, in the frame's pixels."""
    back = []
    for det in found:
        # Rotated (x', y') came from (y', h - 1 - x') of the frame.
        q = order_quad(np.stack([det.quad[:, 1], h - 1 - det.quad[:, 0]], axis=1))
        back.append(Detection(q, quad_box(q, w, h), det.score, origin=origin))
    return back


def _cut_by_tile(box: dict[str, int], x0: int, y0: int, tw: int, th: int, w: int, h: int) -> bool:
    """Whether a tile's line touches one of the tile's edges inside the frame."""
    margin = 2
    return (
        (x0 > 0 and box["xmin"] <= x0 + margin)
        or (y0 > 0 and box["ymin"] <= y0 + margin)
        or (x0 + tw < w and box["xmax"] >= x0 + tw - 1 - margin)
        or (y0 + th < h and box["ymax"] >= y0 + th - 1 - margin)
    )


def _duplicate(a: dict[str, int], b: dict[str, int]) -> bool:
    iw = min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"])
    ih = min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"])
    if iw <= 0 or ih <= 0:
        return False

    def area(r: dict[str, int]) -> int:
        return max(1, (r["xmax"] - r["xmin"]) * (r["ymax"] - r["ymin"]))

    inter = iw * ih
    return inter / (area(a) + area(b) - inter) >= DUPLICATE_IOU
