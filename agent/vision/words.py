"""Words of about 17 characters, found from the frame's own character shapes.

The detector network was trained on the project's generated carriers, and on
plainly printed text it has never seen (a VIN typed on a sheet, a label in
another font) it can miss a line a person reads at a glance.  This pass
does not learn anything: it binarises the frame both ways round (dark on
light and light on dark), keeps the connected components shaped like
characters, chains each to its right-hand neighbour when they are alike in
height, on one baseline and closer than a word gap, and proposes every chain
of about 17 characters as a line.  The recognizer and the VIN rules then
judge it like any other line, so a proposal that is not a VIN costs a read,
not a wrong VIN.

A VIN is one word: a word gap splits ``VIN:`` off the 17 characters, which
matters because a crop that starts with the prefix is read as more than 17
characters.  Only level text is chained (within ``MAX_TILT``); turned
photos are the quarter turn's job.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from agent import vin
from agent.vision.geometry import order_quad

logger = logging.getLogger(__name__)

#: Frames are searched at most this wide: finer than the detector's input, so
#: characters of 8 px in a 1920x1080 frame keep 5 px.
MAX_WIDTH = 1280
#: Binarisation: a pixel is ink when it is CONTRAST grey levels darker (or lighter)
#: than the mean of the BLOCK x BLOCK pixels around it. BLOCK 31 -> 21: the VIN's word
#: found in 0.873 -> 0.927 of 300 plain VINs (seed 1; 0.890 -> 0.907 on seed 2, which
#: nothing was tuned on) and 0.404 -> 0.410 of 317 VINs in 300 generated scenes; end
#: to end, plain seed 2 81.0 / 0.00 -> 82.3 / 0.00 % exact / wrong, 1,000 generated
#: scenes 57.9 / 1.32 / 9 -> 58.3 / 1.41 / 9. Smaller blocks (15) or a higher
#: CONTRAST (16) found more plain VINs and fewer generated ones.
BLOCK = 21
CONTRAST = 12
#: Character components: height in working pixels, width over height (up to a few
#: glyphs that blur or bold print has run together), and the share of their box
#: that is ink.
MIN_CHAR_HEIGHT = 5
MAX_CHAR_HEIGHT = 120
MAX_CHAR_ASPECT = 4.0
MIN_FILL = 0.12
#: Neighbours: heights within this ratio, centres within this share of the
#: height across the line, and the gap between them at most this share of it.
MAX_HEIGHT_RATIO = 1.6
MAX_OFFSET = 0.35
MAX_GAP = 1.0
#: A gap inside a chain is a word gap when it is WORD_GAP times the chain's median
#: gap and WORD_GAP_MIN line heights more than it.
WORD_GAP = 2.5
WORD_GAP_MIN = 0.3
#: A part of a chain longer than 18 glyphs is cut at its widest gap when that is
#: WEAK_GAP times the median gap and WEAK_GAP_MIN line heights more than it.
WEAK_GAP = 1.6
WEAK_GAP_MIN = 0.15
#: Bold or blurred print runs glyphs together beyond what ``glyphs`` can count: a
#: chain of at least MIN_GLYPHS is still a word when it is as long, in line heights,
#: as 17 characters are (from condensed to wide faces).
#: With the widest-gap cut, on 300 plain VINs (``benchmarks/plain.py``, seed 1) the
#: VIN's word is found (box IoU >= 0.5) in 0.757 -> 0.873 of images, 1.3 -> 2.2 words
#: per image; end to end (tiles, quarter turn, threshold 0.8) exact / wrong 72.3 /
#: 0.33 -> 80.0 / 0.67 %; on 1,000 generated scenes (seed 2718) exact / wrong / false
#: reads 57.6 / 1.41 / 9 -> 57.9 / 1.32 / 9.
MIN_GLYPHS = 8
MIN_ASPECT = 9.0
MAX_ASPECT = 15.0
#: A chain is a proposal when it holds this many characters (broken or touching
#: glyphs move the count a little either way).
MIN_CHARS = 14
MAX_CHARS = 20
#: Chains steeper than this (degrees) are left to the detector.
MAX_TILT = 12.0
#: At most this many components per polarity are chained (a textured frame makes
#: thousands of specks; the largest are kept).
MAX_COMPONENTS = 1500
CONNECTIVITY = 8
#: Boxes after each one, in x order, that may be its right-hand neighbour.
NEIGHBOURS = 48


def _components(binary: np.ndarray) -> np.ndarray:
    """Character-shaped components of a binary image: rows of (x, y, w, h)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=CONNECTIVITY)
    s = stats[1:]
    x, y, w, h, area = (s[:, i].astype(np.float32) for i in range(5))
    keep = (
        (h >= MIN_CHAR_HEIGHT)
        & (h <= MAX_CHAR_HEIGHT)
        & (w <= MAX_CHAR_ASPECT * h)
        & (area >= MIN_FILL * w * h)
        & (w >= 1)
    )
    boxes = np.stack([x, y, w, h], axis=1)[keep]
    if len(boxes) > MAX_COMPONENTS:
        boxes = boxes[np.argsort(-boxes[:, 3])[:MAX_COMPONENTS]]
    return boxes


def _chains(boxes: np.ndarray) -> list[np.ndarray]:
    """Chains of left-to-right neighbours, each an array of indices into ``boxes``."""
    n = len(boxes)
    if n == 0:
        return []
    order = np.argsort(boxes[:, 0], kind="stable")
    x, y, w, h = boxes[order].T
    cy = y + h / 2
    # Candidates for the box after i: the next NEIGHBOURS boxes in x order (other lines'
    # boxes come between, so not just the next one), as an (n, k) band, not n x n.
    k = min(NEIGHBOURS, n - 1)
    if k == 0:
        return [np.array([i]) for i in order]
    j = np.arange(n)[:, None] + np.arange(1, k + 1)[None, :]
    valid = j < n
    j = np.minimum(j, n - 1)
    gap = x[j] - (x + w)[:, None]
    hmax = np.maximum(h[:, None], h[j])
    hmin = np.minimum(h[:, None], h[j])
    ok = (
        valid
        & (gap > -0.25 * hmax)
        & (gap <= MAX_GAP * hmax)
        & (hmax <= MAX_HEIGHT_RATIO * hmin)
        & (np.abs(cy[j] - cy[:, None]) <= MAX_OFFSET * hmax)
    )
    cost = np.where(ok, gap, np.inf)
    pick = np.argmin(cost, axis=1)
    rows = np.arange(n)
    has = np.isfinite(cost[rows, pick])
    nxt = np.where(has, j[rows, pick], -1)
    # A link holds only when i is also the nearest left neighbour of its next: no forks.
    prev = np.full(n, -1)
    src = np.nonzero(has)[0]
    if len(src):
        link_cost = cost[src, pick[src]]
        by_target = np.lexsort((link_cost, nxt[src]))  # nearest first within each target
        targets = nxt[src][by_target]
        first = np.ones(len(targets), bool)
        first[1:] = targets[1:] != targets[:-1]
        prev[targets[first]] = src[by_target][first]
    chains = []
    for start in np.nonzero(prev < 0)[0]:
        chain = [start]
        while nxt[chain[-1]] >= 0 and prev[nxt[chain[-1]]] == chain[-1]:
            chain.append(nxt[chain[-1]])
        # A component holds at most a few glyphs: short chains need no count.
        if len(chain) >= MIN_GLYPHS // 4 and glyphs(boxes[chain]) >= MIN_GLYPHS:
            chains.extend(_split_words(order[np.array(chain)], boxes))
    return chains


def _split_words(chain: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The VIN-sized words of a chain, cut at its word gaps: gaps well above the
    chain's typical letter gap.

    No fixed share of the height tells a word gap from a letter gap in every
    font (a monospace ``1`` leaves more room than a proportional space), but
    within one line the word gaps stand out from the letter gaps.  A part still
    too long for a VIN (``VIN: 1HG...`` in a tightly spaced face) is cut again
    at its widest gap when that gap stands out at all.
    """
    x, _, w, h = boxes[chain].T
    gaps = x[1:] - (x + w)[:-1]
    letter = max(float(np.median(gaps)), 0.0)
    height = float(np.median(h))
    cut = np.nonzero(gaps > max(WORD_GAP * letter, letter + WORD_GAP_MIN * height))[0]
    out = []
    for part in np.split(chain, cut + 1):
        out.extend(_too_long_cut(part, boxes, letter, height))
    return out


def _too_long_cut(
    part: np.ndarray, boxes: np.ndarray, letter: float, height: float
) -> list[np.ndarray]:
    if len(part) >= 2 and glyphs(boxes[part]) > vin.VIN_LENGTH + 1:
        x, _, w, _ = boxes[part].T
        gaps = x[1:] - (x + w)[:-1]
        widest = int(np.argmax(gaps))
        if gaps[widest] > max(WEAK_GAP * letter, letter + WEAK_GAP_MIN * height):
            left, right = part[: widest + 1], part[widest + 1 :]
            return _too_long_cut(left, boxes, letter, height) + _too_long_cut(
                right, boxes, letter, height
            )
    return [part] if _vin_sized(boxes[part]) else []


def _vin_sized(boxes: np.ndarray) -> bool:
    """About 17 glyphs; or fewer, run together, over the length 17 characters take."""
    n = glyphs(boxes)
    if MIN_CHARS <= n <= MAX_CHARS:
        return True
    x, _, w, h = boxes.T
    aspect = float((x + w).max() - x.min()) / max(float(np.median(h)), 1.0)
    return MIN_GLYPHS <= n < MIN_CHARS and MIN_ASPECT <= aspect <= MAX_ASPECT


def glyphs(boxes: np.ndarray) -> int:
    """How many characters a chain of components holds: a component as wide as two of
    the chain's typical ones is two glyphs run together."""
    w = boxes[:, 2].tolist()
    typical = max(sorted(w)[len(w) // 2], 1.0)  # the median; np.median costs 30x more here
    return sum(max(1, round(x / typical)) for x in w)


def _quad(boxes: np.ndarray) -> np.ndarray | None:
    """The line quad through a chain's boxes, or None when it is too steep."""
    x, y, w, h = boxes.T
    cx, cy = x + w / 2, y + h / 2
    slope = float(np.polyfit(cx, cy, 1)[0]) if np.ptp(cx) > 0 else 0.0
    if abs(np.degrees(np.arctan(slope))) > MAX_TILT:
        return None
    half = float(np.median(h)) / 2
    x0, x1 = float(x.min()), float((x + w).max())
    c0 = float(np.polyval([slope, float(np.mean(cy - slope * cx))], x0))
    c1 = float(np.polyval([slope, float(np.mean(cy - slope * cx))], x1))
    quad = np.array(
        [[x0, c0 - half], [x1, c1 - half], [x1, c1 + half], [x0, c0 + half]], np.float32
    )
    return order_quad(quad)


def find_words(gray: np.ndarray) -> list[np.ndarray]:
    """Quads (frame pixels) of level words of about 17 character-shaped parts."""
    scale = min(1.0, MAX_WIDTH / max(gray.shape[1], 1))
    work = gray
    if scale < 1:
        work = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    quads = []
    # Dark ink is CONTRAST below its surroundings' mean, light ink CONTRAST above it.
    for kind, contrast in ((cv2.THRESH_BINARY_INV, CONTRAST), (cv2.THRESH_BINARY, -CONTRAST)):
        binary = cv2.adaptiveThreshold(work, 255, cv2.ADAPTIVE_THRESH_MEAN_C, kind, BLOCK, contrast)
        boxes = _components(binary)
        for chain in _chains(boxes):
            q = _quad(boxes[chain])
            if q is not None:
                quads.append(q / scale)
    return quads
